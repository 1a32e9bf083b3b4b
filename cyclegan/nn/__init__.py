"""Networks built on our InstanceNorm: generators, discriminators, init, reference-weight import."""

from cyclegan.nn.norm import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d

__all__ = ["InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"]
