"""Pure-PyTorch InstanceNorm: the CPU path and the readable reference next to the Triton kernels."""

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


def instance_norm_torch(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    activation: str | None = None,
    negative_slope: float = 0.2,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """``act(weight * (x - mean) / sqrt(var + eps) + bias) + residual`` per (sample, channel) plane.

    Statistics are computed in fp32 (fp64 for fp64 input, which makes this the tests' reference) with two
    passes (mean, then the mean of squared deviations), so planes with a large mean stay exact; the result
    is cast back to the input dtype.
    """
    dims = tuple(range(2, x.dim()))
    compute = _compute_dtype(x)
    xf = x.to(compute)
    mean = xf.mean(dim=dims, keepdim=True)
    var = (xf - mean).square().mean(dim=dims, keepdim=True)
    z = (xf - mean) * torch.rsqrt(var + eps)
    shape = (1, -1) + (1,) * len(dims)
    if weight is not None:
        z = z * weight.to(compute).view(shape)
    if bias is not None:
        z = z + bias.to(compute).view(shape)
    y = apply_activation(z, activation, negative_slope)
    if residual is not None:
        y = y + residual.to(compute)
    return y.to(x.dtype)


def instance_norm_stats_torch(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-plane ``(mean, rstd)`` in fp32 (fp64 for fp64 input), shape ``(N, C)``: what the kernels save."""
    dims = tuple(range(2, x.dim()))
    xf = x.to(_compute_dtype(x))
    mean = xf.mean(dim=dims)
    var = (xf - mean.view(*mean.shape, *(1,) * len(dims))).square().mean(dim=dims)
    return mean, torch.rsqrt(var + eps)
