"""InstanceNorm ops: Triton kernels with fused affine, activation and residual, and a PyTorch path."""

from cyclegan.ops.instance_norm import instance_norm, interpreter_enabled, triton_available
from cyclegan.ops.reference import instance_norm_stats_torch, instance_norm_torch

__all__ = [
    "instance_norm",
    "instance_norm_stats_torch",
    "instance_norm_torch",
    "interpreter_enabled",
    "triton_available",
]
