"""InstanceNorm ops: Triton kernels with fused affine, activation and residual, and a PyTorch path."""

from cyclegan.ops.instance_norm import BACKENDS, instance_norm
from cyclegan.ops.reference import ACTIVATIONS, instance_norm_ref, instance_norm_stats_ref
from cyclegan.ops.torch_path import instance_norm_torch
from cyclegan.ops.triton_support import interpreter_enabled, triton_available

__all__ = [
    "ACTIVATIONS",
    "BACKENDS",
    "instance_norm",
    "instance_norm_ref",
    "instance_norm_stats_ref",
    "instance_norm_torch",
    "interpreter_enabled",
    "triton_available",
]
