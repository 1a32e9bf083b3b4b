"""Whether the Triton kernels can run here: the package is installed, and whether it runs interpreted."""

from __future__ import annotations

import functools
import os


def interpreter_enabled() -> bool:
    """True when ``TRITON_INTERPRET=1``: Triton kernels then run on CPU tensors (slowly)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def triton_available() -> bool:
    """True when the triton package imports (asked once: the answer cannot change in a process)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
