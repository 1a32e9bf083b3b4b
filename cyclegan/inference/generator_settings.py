"""The generator settings a checkpoint or export file declares, checked before any network is built.

A file's metadata is untrusted input: a wrong type, a missing key or an absurd size (ngf=200000 asks
for terabytes) must be refused naming the file, never handed to the allocator. The network is first
built on PyTorch's meta device, which allocates nothing, to count its parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cyclegan.nn import build_generator

# Far beyond any CycleGAN generator (resnet_9blocks at ngf=64: 11.4 M parameters); 4 GB in float32.
MAX_PARAMETERS = 1_000_000_000
REQUIRED = ("arch", "input_nc", "output_nc")
_INTEGERS = ("input_nc", "output_nc", "ngf", "n_blocks", "num_downs")
# Counts of repeated blocks, bounded before building: each block is Python objects even on the meta device.
_MAX_COUNTS = {"n_blocks": 100, "num_downs": 16}
_STRINGS = ("arch", "layout", "norm", "padding_type", "upsample", "init_type", "backend")


def build_declared_generator(settings: object, path: Path, error: Callable[[str], Exception]) -> nn.Module:
    """``build_generator(**settings)`` once the settings are checked; ``error`` (naming ``path`` and what
    is wrong) for a non-dict, a missing key, a wrong type, an unknown option or a network too large."""
    checked = checked_generator_settings(settings, path, error)
    try:
        with torch.device("meta"):
            parameters = sum(p.numel() for p in build_generator(**checked).parameters())
    except (TypeError, ValueError) as problem:
        raise error(f"{path}: its generator settings are not valid ({problem})") from None
    if parameters > MAX_PARAMETERS:
        raise error(
            f"{path}: its generator settings describe a network of {parameters:,} parameters "
            f"({parameters * 4 / 2**30:,.0f} GiB), over the limit of {MAX_PARAMETERS:,}; refusing to build "
            f"it (settings: {checked})"
        )
    return build_generator(**checked)


def checked_generator_settings(
    settings: object, path: Path, error: Callable[[str], Exception]
) -> dict[str, Any]:
    """A copy of ``settings`` once it is a dict with the required keys and values of the right types."""
    if not isinstance(settings, dict):
        raise error(f"{path}: its generator settings are not a dict ({type(settings).__name__})")
    missing = [key for key in REQUIRED if key not in settings]
    if missing:
        raise error(f"{path}: its generator settings lack {', '.join(missing)}")
    for key, value in settings.items():
        if key in _INTEGERS and value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise error(f"{path}: generator setting {key} must be an integer, got {value!r}")
        if key in _INTEGERS and value is not None and value < (0 if key == "n_blocks" else 1):
            raise error(f"{path}: generator setting {key} must be positive, got {value}")
        if key in _MAX_COUNTS and value is not None and value > _MAX_COUNTS[key]:
            raise error(f"{path}: generator setting {key}={value} is over the limit of {_MAX_COUNTS[key]}")
        if key in _STRINGS and value is not None and not isinstance(value, str):
            raise error(f"{path}: generator setting {key} must be a string, got {value!r}")
    return dict(settings)
