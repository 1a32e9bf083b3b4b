"""`SettingError`: a setting whose value cannot work, raised where the object is built and named so that
the command line can say which config key is wrong; and the checks that raise it.

A constructor checks its own arguments (``check_choice``, ``check_int``, ``check_number``, ...); a
constructor that passes settings on to another (a model building its networks) re-raises their errors
`within` its argument's name; the command prefixes the config group. So ``build_generator(upsample="x")``
says "upsample must be one of [...]", and ``cyclegan-train model.generator.upsample=x`` says
"model.generator.upsample=x: unknown upsampling, choose one of transpose, resize". Imports nothing of ours.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

_NO_VALUE = object()


class SettingError(ValueError):
    """A setting (``name``, a key path once wrapped `within` others) whose ``value`` cannot work.

    ``requirement`` says what it must be ("must be >= 0") or what is wrong ("is larger than {load_size}":
    names in braces are the ``related`` settings, shown as ``name=value``). ``choices`` (with ``what``, the
    kind of value, e.g. "loss") says it must be one of them. ``label`` names the setting in the library's
    own message where its name alone is ambiguous ("generator arch").
    """

    def __init__(
        self,
        name: str,
        value: Any = _NO_VALUE,
        requirement: str = "",
        *,
        choices: Iterable[Any] | None = None,
        what: str = "value",
        label: str | None = None,
        related: Mapping[str, Any] | None = None,
    ) -> None:
        self.path: tuple[str, ...] = (name,)
        self.value = value
        self.requirement = requirement
        self.choices = None if choices is None else list(choices)
        self.what = what
        self.label = label or name
        self.related = dict(related or {})
        super().__init__(self._library_message())

    @property
    def key(self) -> str:
        """The dotted key path of the setting, e.g. ``generator.upsample``."""
        return ".".join(self.path)

    def within(self, *names: str) -> SettingError:
        """This error with its key path inside ``names`` (a model re-raising its network's error)."""
        self.path = (*names, *self.path)
        return self

    def _related(self, prefix: str) -> dict[str, str]:
        return {name: f"{prefix}{name}={value}" for name, value in self.related.items()}

    def _library_message(self) -> str:
        if self.choices is not None:
            return f"{self.label} must be one of {self.choices}, got {self.value!r}"
        requirement = self.requirement.format(**self._related(""))
        if self.value is _NO_VALUE:
            return f"{self.label}: {requirement}"
        if requirement.startswith("must"):
            return f"{self.label} {requirement}, got {self.value!r}"
        return f"{self.label}={self.value}{_joiner(requirement)}{requirement}"

    def config_message(self, prefix: str = "") -> str:
        """The message as a command reports it, naming the full config key (``prefix`` + key path)."""
        key = prefix + self.key
        if self.choices is not None:
            shown = ", ".join(str(choice) for choice in self.choices)
            return f"{key}={self.value}: unknown {self.what}, choose one of {shown}"
        parent = key.rpartition(".")[0]
        requirement = self.requirement.format(**self._related(f"{parent}." if parent else ""))
        if self.value is _NO_VALUE:
            return f"{key}: {requirement}"
        return f"{key}={self.value}{_joiner(requirement)}{requirement}"


def _joiner(requirement: str) -> str:
    """ " " before a predicate that reads on ("x=3 must be ...", "x=3 is larger than ..."), else ": "."""
    return " " if requirement.startswith(("must ", "is ", "conflicts ")) else ": "


def check_choice(
    name: str, value: Any, choices: Iterable[Any], *, what: str = "value", label: str = ""
) -> None:
    """Raise a `SettingError` unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise SettingError(name, value, choices=choices, what=what, label=label or None)


def check_int(name: str, value: Any, minimum: int, *, optional: bool = False) -> None:
    """Raise a `SettingError` unless ``value`` is an int (not a bool) of at least ``minimum`` (or None
    when ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        none = " or null" if optional else ""
        raise SettingError(name, value, f"must be an integer >= {minimum}{none}")


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    optional: bool = False,
) -> None:
    """Raise a `SettingError` unless ``value`` is a finite real number (not a bool) within the bounds:
    ``>= minimum``, ``> above``, ``< below`` (None when ``optional``)."""
    if optional and value is None:
        return
    bounds = " and ".join(
        f"{sign} {bound:g}"
        for sign, bound in ((">=", minimum), (">", above), ("<", below))
        if bound is not None
    )
    none = " or null" if optional else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SettingError(name, value, f"must be a finite number {bounds}{none}".rstrip())
    if (
        (minimum is not None and value < minimum)
        or (above is not None and value <= above)
        or (below is not None and value >= below)
    ):
        raise SettingError(name, value, f"must be {bounds}{none}")


def check_bool(name: str, value: Any) -> None:
    """Raise a `SettingError` unless ``value`` is True or False."""
    if not isinstance(value, bool):
        raise SettingError(name, value, "must be true or false")
