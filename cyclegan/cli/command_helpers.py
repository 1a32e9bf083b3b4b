"""Set-up shared by the commands: checks of their Hydra configs and the exit on a user error."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import torch
from omegaconf import DictConfig, OmegaConf

from cyclegan.checkpoint_files import CheckpointError
from cyclegan.inference.devices import autocast_for, resolve_device
from cyclegan.inference.onnx_generator import OnnxUnavailableError

T = TypeVar("T")

# What a command reports as ``NAME: error: ...`` (exit status 2) instead of a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    CheckpointError,
    FileNotFoundError,
    ValueError,
    OnnxUnavailableError,
)


def missing_settings(cfg: DictConfig) -> list[str]:
    """The settings left at ``???`` (required, no default), e.g. ``["data.root"]``; Hydra's own excluded."""
    own = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])  # composed with hydra or not
    return sorted(OmegaConf.missing_keys(own))


def require_settings(cfg: DictConfig) -> None:
    """Raise a ValueError naming every required setting that was not given (instead of a traceback)."""
    missing = missing_settings(cfg)
    if missing:
        raise ValueError(
            f"missing required setting{'s' * (len(missing) > 1)} {', '.join(missing)}: pass "
            f"{' '.join(f'{key}=...' for key in missing)} (see --help)"
        )


def check_inference_settings(cfg: DictConfig) -> torch.device:
    """The device ``cfg.device`` names, after checking ``precision``, ``batch_size`` and ``resize``."""
    device = resolve_device(cfg.device)
    autocast_for(cfg.precision, device)  # validates the name before any work
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {cfg.batch_size}")
    if cfg.resize is not None and cfg.resize < 1:
        raise ValueError(f"resize must be a positive number of pixels (the shorter side), got {cfg.resize}")
    return device


def inference_options(cfg: DictConfig) -> dict[str, object]:
    """The batching, precision, resize and progress settings the translate and eval commands pass on."""
    return {
        "batch_size": cfg.batch_size,
        "precision": str(cfg.precision),
        "resize": cfg.resize,
        "progress": cfg.progress,
    }


def run_or_exit(command: str, run: Callable[[], T], errors: tuple[type[Exception], ...] = USER_ERRORS) -> T:
    """``run()``'s result; one of ``errors`` is printed as ``COMMAND: error: ...`` and exits with status 2."""
    try:
        return run()
    except errors as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        sys.exit(2)
