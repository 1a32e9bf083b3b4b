"""Network settings as the models receive them from Hydra: plain containers, completed with the builders'
defaults so that checkpoints record every setting and inference can rebuild the networks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from cyclegan.errors import SettingError


def plain_container(value: Any) -> Any:
    """``value`` with OmegaConf containers, mappings and sequences turned into plain dicts and lists
    (a checkpoint holding an OmegaConf object would not load with ``weights_only=True``)."""
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(key): plain_container(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_container(item) for item in value]
    return value


def with_builder_defaults(builder: Callable[..., nn.Module], config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` completed with the builder's keyword defaults, so checkpoints record every setting."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(builder).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return {**defaults, **plain_container(config)}


def without_input_channels(discriminator: Mapping[str, Any], *, expected: int | None, who: str) -> dict:
    """The discriminator settings without ``input_nc``, which the model sets from what the discriminator
    judges; a given value must equal ``expected`` (None: any given value is refused)."""
    settings = plain_container(discriminator)
    if "input_nc" not in settings:
        return settings
    given = settings.pop("input_nc")
    if expected is None or given != expected:
        raise SettingError(
            "input_nc",
            given,
            f"conflicts with {who}: leave it out, the model sets the channel count of what the "
            "discriminator judges",
            label="discriminator input_nc",
        ).within("discriminator")
    return settings


def build_network(role: str, builder: Callable[..., nn.Module], settings: Mapping[str, Any]) -> nn.Module:
    """``builder(**settings)``, its errors named as settings of ``role`` (the model's argument, e.g.
    "generator"), so a command can say ``model.generator.ngf=0 must be ...``."""
    try:
        return builder(**settings)
    except SettingError as error:
        raise error.within(role) from None
    except (ValueError, TypeError) as error:
        raise SettingError(role, requirement=str(error)) from None
