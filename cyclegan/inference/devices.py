"""Where and in which precision inference runs: device names, autocast, a module's device."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

PRECISIONS = ("32", "16-mixed", "bf16-mixed")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; anything else as torch.device understands it."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} asked for CUDA, but no CUDA device is available; use device=cpu")
    return resolved


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for a Lightning-style precision name ("32", "16-mixed", "bf16-mixed")."""
    precision = str(precision)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "16-mixed" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def module_device(module: nn.Module, default: torch.device | None = None) -> torch.device:
    """The device of ``module``'s first parameter (``default``, else CPU, for a parameter-free module)."""
    return next((p.device for p in module.parameters()), default or torch.device("cpu"))
