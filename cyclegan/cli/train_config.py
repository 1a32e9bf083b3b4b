"""The training config checked by building what it describes, before any compute: a bad value fails at
start with one message naming its config key (exit status 2).

Each value is checked once, where its object is built: the data module, the model and its networks
raise `cyclegan.errors.SettingError` naming the argument, which gets its config key here. What no single
object can check is checked here: required keys left at ``???``, the types of the settings given to
classes we do not own (the Trainer, callbacks, loggers: against their signatures), a checkpoint to resume
that is not there, and whether the crop size suits the generator.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.errors import InstantiationException
from omegaconf import DictConfig, ListConfig, OmegaConf

from cyclegan.checkpoint_files import checkpoint_exists
from cyclegan.cli.command_helpers import missing_settings
from cyclegan.errors import SettingError

EXIT_BAD_INPUT = 2


class ConfigError(ValueError):
    """A config value that cannot work; raised before anything is trained."""


@dataclass
class CheckedRun:
    """The data module and model a config describes, built and checked against each other."""

    datamodule: pl.LightningDataModule
    model: pl.LightningModule


def build_checked(cfg: DictConfig) -> CheckedRun:
    """Seed, then build the data module and the model of ``cfg``; raise `ConfigError` listing every
    problem found (each naming its config key) before anything is trained."""
    missing = missing_settings(cfg)
    if missing:  # everything below reads these values
        raise ConfigError(_listed([f"{key}: required, pass {key}=..." for key in missing]))
    problems = [
        *_type_problems(cfg.get("trainer"), "trainer."),
        *(problem for group in ("callbacks", "logger") for problem in _group_type_problems(cfg, group)),
    ]
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path not in (None, "last") and not checkpoint_exists(str(ckpt_path)):
        problems.append(f"ckpt_path={ckpt_path}: no such checkpoint file (or use ckpt_path=last)")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the model's weights are drawn when built
    datamodule = _build(cfg.data, "data.", problems, _check_training_folders)
    model = _build(cfg.model, "model.", problems)
    if datamodule is not None and model is not None:
        problems += _size_problems(datamodule, model)
    if problems:
        raise ConfigError(_listed(problems))
    return CheckedRun(datamodule, model)


def _listed(problems: Sequence[str]) -> str:
    return "invalid configuration:\n  - " + "\n  - ".join(problems)


def _check_training_folders(node: DictConfig) -> None:
    """The data module's own cheap check of its folders, before it is built (building one over a missing
    folder fails without saying which config key to change)."""
    check = getattr(hydra.utils.get_class(node._target_), "check_training_folders", None)
    if check is not None:
        check(OmegaConf.to_container(node, resolve=True))


def _build(
    node: DictConfig,
    prefix: str,
    problems: list[str],
    check_first: Callable[[DictConfig], None] | None = None,
) -> Any:
    """``node`` instantiated; its `SettingError` (or other ValueError/TypeError) is added to ``problems``
    under the node's key ``prefix`` and None returned."""
    try:
        if check_first is not None:
            check_first(node)
        return hydra.utils.instantiate(node, _convert_="all")
    except (InstantiationException, SettingError, ValueError, TypeError, OSError) as raised:
        error = (
            raised.__cause__ if isinstance(raised, InstantiationException) and raised.__cause__ else raised
        )
        if isinstance(error, SettingError):
            problems.append(error.config_message(prefix))
        elif isinstance(error, (ValueError, TypeError, OSError)):
            problems.append(f"{prefix.rstrip('.')}: {error}")
        else:
            raise
        return None


def _size_problems(datamodule: Any, model: Any) -> list[str]:
    """The crop size against the size multiple the generators need (U-Net: 2**num_downs, ResNet: 4)."""
    transform = getattr(datamodule, "train_transform", None)
    if transform is None or not transform.crops:
        return []
    for name in dict.fromkeys(getattr(model, "generator_names", {}).values()):
        generator = getattr(model, name)
        multiple = getattr(generator, "size_multiple", 1)
        if transform.crop_size % multiple:
            return [
                f"data.crop_size={transform.crop_size}: the {generator.spec['arch']} generator needs image "
                f"sizes that are multiples of {multiple}"
            ]
    return []


# --------------------------------------------------------------------------- types of other classes' settings
def _group_type_problems(cfg: DictConfig, group: str) -> list[str]:
    entries = cfg.get(group) or {}
    return [
        problem
        for name, entry in entries.items()
        if isinstance(entry, DictConfig)
        for problem in _type_problems(entry, f"{group}.{name}.")
    ]


def _type_problems(node: DictConfig | None, prefix: str) -> list[str]:
    """Settings of a ``_target_`` outside cyclegan whose values do not fit the target's annotations (our
    own classes check their arguments themselves, with their own words)."""
    if not isinstance(node, DictConfig) or "_target_" not in node or node._target_.startswith("cyclegan."):
        return []
    try:
        target = hydra.utils.get_object(node._target_)
        hints = typing.get_type_hints(target.__init__ if isinstance(target, type) else target)
    except Exception:  # an unresolvable annotation or target: instantiating will say what is wrong
        return []
    problems = []
    for key, value in node.items():
        if key.startswith("_") or key not in hints or (isinstance(value, DictConfig) and "_target_" in value):
            continue
        plain = (
            OmegaConf.to_container(value, resolve=True)
            if isinstance(value, (DictConfig, ListConfig))
            else value
        )
        if not _fits(plain, hints[key]):
            problems.append(f"{prefix}{key}={plain}: expected {_describe(hints[key])}")
    return problems


def _fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` (a plain config value) fits ``annotation``; annotations it cannot judge fit."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or isinstance(annotation, typing.TypeVar):
        return True
    if annotation is type(None) or annotation is None:
        return value is None
    if origin is typing.Union or (origin is not None and origin.__name__ == "UnionType"):
        return any(_fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    container = origin or annotation
    if isinstance(container, type) and issubclass(container, Mapping):
        return isinstance(value, Mapping)
    if isinstance(container, type) and issubclass(container, (list, tuple)):
        return isinstance(value, (list, tuple))
    return True


def _describe(annotation: Any) -> str:
    """``annotation`` in words: "an integer or null", "one of 32-true, bf16-mixed, ..."."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and origin.__name__ == "UnionType"):
        return " or ".join(dict.fromkeys(_describe(arg) for arg in args))
    if origin is typing.Literal:
        return "one of " + ", ".join(str(arg) for arg in args)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))
