"""Test set-up: Triton kernels run under the interpreter on CPU unless a GPU run asks otherwise.

``TRITON_INTERPRET`` must be set before triton is first imported, so it is set here, at collection
start. Run the GPU tests with ``TRITON_INTERPRET=0 pytest -m gpu``.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
# The tests' networks are tiny: a second intra-op thread only adds synchronization, and on a busy 2-core
# machine torch's spinning threads slow every test (and the training subprocesses, which inherit this).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    interpreted = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    if torch.cuda.is_available() and not interpreted:
        return
    reason = "needs CUDA" if not torch.cuda.is_available() else "set TRITON_INTERPRET=0 for GPU tests"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # keywords would also match a folder named gpu
            item.add_marker(skip)
