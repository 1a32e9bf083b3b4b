"""The public InstanceNorm op: validates its input, then runs the Triton kernels or the PyTorch path."""

from __future__ import annotations

import math

import torch

from cyclegan.ops.reference import ACTIVATIONS, instance_norm_ref
from cyclegan.ops.torch_path import instance_norm_torch
from cyclegan.ops.triton_support import triton_available

BACKENDS = ("auto", "triton", "torch")


def validate_instance_norm_args(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    activation: str | None,
    residual: torch.Tensor | None,
    backend: str,
) -> None:
    """Raise a clear error for input the op cannot normalize."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"instance_norm expects a tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4, 5):
        raise ValueError(
            f"instance_norm expects input of rank 3, 4 or 5 (N, C, *spatial), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"instance_norm expects a floating-point input, got dtype {x.dtype}")
    channels = x.shape[1]
    for name, param in (("weight", weight), ("bias", bias)):
        if param is None:
            continue
        if param.dim() != 1 or param.numel() != channels:
            raise ValueError(
                f"instance_norm {name} must be 1-D with {channels} elements (one per channel of input "
                f"{tuple(x.shape)}), got shape {tuple(param.shape)}"
            )
        if not param.is_floating_point():
            raise TypeError(f"instance_norm {name} must be floating point, got dtype {param.dtype}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"instance_norm activation must be one of {ACTIVATIONS}, got {activation!r}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(
            f"instance_norm residual must have the input's shape {tuple(x.shape)}, "
            f"got {tuple(residual.shape)}"
        )
    if residual is not None and not residual.is_floating_point():
        raise TypeError(f"instance_norm residual must be floating point, got dtype {residual.dtype}")
    for name, tensor in (("weight", weight), ("bias", bias), ("residual", residual)):
        if tensor is not None and tensor.device != x.device:
            raise ValueError(f"instance_norm {name} is on {tensor.device} but the input is on {x.device}")
    spatial = math.prod(x.shape[2:])
    if spatial <= 1 and x.numel() > 0:
        raise ValueError(
            f"instance_norm needs more than 1 spatial element per channel to compute a variance, "
            f"got input of shape {tuple(x.shape)}"
        )
    if backend not in BACKENDS:
        raise ValueError(f"instance_norm backend must be one of {BACKENDS}, got {backend!r}")


def instance_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    activation: str | None = None,
    negative_slope: float = 0.2,
    residual: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Instance normalization with fused affine, activation and residual add.

    ``y = act(weight * (x - mean) / sqrt(var + eps) + bias) + residual`` with mean and biased variance per
    (sample, channel) over all spatial positions. ``backend="auto"`` runs the Triton kernels on CUDA
    tensors (fp32/fp16/bf16) and the PyTorch path elsewhere (CPU, fp64); ``"triton"`` forces the kernels
    (on CPU tensors only under ``TRITON_INTERPRET=1``), ``"torch"`` forces the PyTorch path.

    Statistics are fp32 (fp64 on the PyTorch path for fp64 input); the output has the dtype and memory
    layout (NCHW or channels_last) of ``x``. Under autocast the op follows the dtype of ``x`` (the conv
    output): no cast is inserted. weight, bias and residual may be any float dtype. ``N == 0`` gives an
    empty result.
    """
    validate_instance_norm_args(x, weight, bias, activation, residual, backend)
    if backend == "auto":
        # The kernels compute in fp32: fp64 keeps its precision on the PyTorch path.
        use_kernels = x.is_cuda and x.dtype != torch.float64 and triton_available()
        backend = "triton" if use_kernels else "torch"
    if backend == "torch":
        if torch.compiler.is_compiling():
            # The compiler fuses the formula itself; ATen's batch-norm kernel behind reshapes of
            # channels_last batches gives traced backward graphs that view non-contiguous gradients.
            return instance_norm_ref(x, weight, bias, eps, activation, negative_slope, residual)
        return instance_norm_torch(x, weight, bias, eps, activation, negative_slope, residual)
    if not triton_available():
        raise RuntimeError("instance_norm backend='triton' needs the triton package, which is not installed")
    from cyclegan.ops.triton_op import instance_norm_triton  # imported on first use: triton is optional

    return instance_norm_triton(x, weight, bias, eps, activation, negative_slope, residual)
