"""benchmarks/instance_norm.py refuses to invent figures without a GPU and says how to smoke-test it."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "instance_norm.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the script measures for real")
def test_benchmark_without_cuda_exits_with_a_clear_message():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "needs a CUDA GPU" in result.stderr and "--cpu-smoke" in result.stderr
    assert result.stdout == ""
