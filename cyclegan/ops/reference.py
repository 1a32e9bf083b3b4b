"""The readable pure-PyTorch InstanceNorm the kernels and the CPU path are tested against.

``instance_norm_ref`` is the formula written out, two-pass statistics in fp32 (fp64 for fp64 input); in
fp64 it is the tests' reference, itself checked against ``F.instance_norm``, the seed formula and
gradcheck. ``ACTIVATIONS`` is the one activation encoding used from the public op down to the kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ACTIVATIONS = (None, "relu", "leaky_relu")


def apply_activation(z: torch.Tensor, activation: str | None, negative_slope: float) -> torch.Tensor:
    """Apply the fused activation named by ``activation`` (None, "relu" or "leaky_relu")."""
    if activation is None:
        return z
    if activation == "relu":
        return F.relu(z)
    return F.leaky_relu(z, negative_slope)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def instance_norm_stats_ref(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-plane ``(mean, rstd)`` in fp32 (fp64 for fp64 input), shape ``(N, C)``: what the kernels save.

    Two passes (the mean, then the mean of squared deviations), so planes with a large mean stay exact.
    """
    dims = tuple(range(2, x.dim()))
    xf = x.to(_compute_dtype(x))
    mean = xf.mean(dim=dims)
    var = (xf - mean.view(*mean.shape, *(1,) * len(dims))).square().mean(dim=dims)
    return mean, torch.rsqrt(var + eps)


def instance_norm_ref(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    activation: str | None = None,
    negative_slope: float = 0.2,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """``act(weight * (x - mean) * rstd + bias) + residual`` per (sample, channel) plane, in x's dtype."""
    mean, rstd = instance_norm_stats_ref(x, eps)
    plane = (*mean.shape, *(1,) * (x.dim() - 2))
    channel = (1, -1, *(1,) * (x.dim() - 2))
    z = (x.to(mean.dtype) - mean.view(plane)) * rstd.view(plane)
    if weight is not None:
        z = z * weight.to(mean.dtype).view(channel)
    if bias is not None:
        z = z + bias.to(mean.dtype).view(channel)
    y = apply_activation(z, activation, negative_slope)
    if residual is not None:
        y = y + residual.to(mean.dtype)
    return y.to(x.dtype)
