"""The PyTorch path of InstanceNorm (CPU, fp64): ATen's fused batch-norm kernel, then the activation and
residual in place where autograd allows.

Instance norm of ``(N, C, *spatial)`` is training-mode batch norm of the ``(1, N*C, *spatial)`` view, which
is also how ``F.instance_norm`` computes it; calling ``native_batch_norm`` directly skips its weight repeat
and reshapes at batch 1 and keeps channels_last there. ATen takes two passes over each plane, in fp64 for
fp64 input; low-precision input gets fp32 weight and bias, which makes ATen keep fp32 statistics (with
bf16/fp16 parameters it would round them to that dtype).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cyclegan.ops.reference import instance_norm_ref

LOW_PRECISION = (torch.float16, torch.bfloat16)


def _channel_param(param: torch.Tensor | None, dtype: torch.dtype, batch: int) -> torch.Tensor | None:
    """``param`` in ``dtype``, repeated once per sample for the ``(1, N*C)`` view of the input."""
    if param is None:
        return None
    param = param.to(dtype)
    return param if batch == 1 else param.repeat(batch)


def _activate_(y: torch.Tensor, activation: str | None, negative_slope: float) -> torch.Tensor:
    """Apply the activation to the batch-norm output in place (its backward does not read that output);
    out of place only for a negative LeakyReLU slope, whose in-place backward autograd does not support."""
    if activation == "relu":
        return y.relu_()
    if activation == "leaky_relu":
        return F.leaky_relu_(y, negative_slope) if negative_slope >= 0 else F.leaky_relu(y, negative_slope)
    return y


def instance_norm_torch(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    activation: str | None,
    negative_slope: float,
    residual: torch.Tensor | None,
) -> torch.Tensor:
    """``act(weight * (x - mean) * rstd + bias) + residual`` through ATen (arguments already validated)."""
    if x.numel() == 0:  # ATen's batch norm rejects empty input; the formula gives the empty result
        return instance_norm_ref(x, weight, bias, eps, activation, negative_slope, residual)
    batch, channels = x.shape[:2]
    param_dtype = torch.float32 if x.dtype in LOW_PRECISION else x.dtype
    if weight is None and x.dtype in LOW_PRECISION:
        weight = torch.ones(channels, device=x.device, dtype=param_dtype)
    planes = x if batch == 1 else x.reshape(1, batch * channels, *x.shape[2:])
    weight = _channel_param(weight, param_dtype, batch)
    bias = _channel_param(bias, param_dtype, batch)
    y = torch.native_batch_norm(planes, weight, bias, None, None, True, 0.0, eps)[0]
    y = _activate_(y, activation, negative_slope)
    if residual is not None:
        residual = residual.reshape(y.shape)
        # In place unless the activation saved y for its backward; either way a residual of another dtype
        # is added in the wider of the two dtypes and rounded once to x's dtype.
        y = y.add_(residual) if activation is None else torch.add(y, residual).to(x.dtype)
    if batch == 1:
        return y
    y = y.reshape(x.shape)
    return y if x.is_contiguous() else torch.empty_like(x).copy_(y)
