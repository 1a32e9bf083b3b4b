"""cyclegan: CycleGAN on PyTorch Lightning with fused Triton InstanceNorm kernels."""

__version__ = "0.1.0"
