"""cyclegan: CycleGAN on PyTorch Lightning with fused Triton InstanceNorm kernels.

The inference helpers are re-exported lazily so that ``import cyclegan.ops`` stays light.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {"load_generator": "cyclegan.inference", "translate": "cyclegan.inference"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cyclegan' has no attribute {name!r}")


__all__ = ["__version__", "load_generator", "translate"]
