"""benchmarks/instance_norm.py: refuses to invent figures without a GPU; its CPU smoke run prints every
summary key BENCHMARKS.md names (the GPU session reads those keys)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "instance_norm.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the script measures for real")
def test_benchmark_without_cuda_exits_with_a_clear_message():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "needs a CUDA GPU" in result.stderr and "--cpu-smoke" in result.stderr
    assert result.stdout == ""


def named_summary_keys() -> list[str]:
    """The keys the InstanceNorm kernels section of BENCHMARKS.md lists after "Reported ratios:"."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    section = text.split("## InstanceNorm kernels", 1)[1].split("\n## ", 1)[0]
    sentence = re.search(r"Reported ratios:(.*?)\.(\s|$)", section, re.S).group(1)
    return re.findall(r"`(\w+)`", sentence)


def test_cpu_smoke_run_prints_every_key_benchmarks_md_names():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [sys.executable, str(SCRIPT), "--cpu-smoke", "--quick", "--no-compile"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    keys = named_summary_keys()
    assert len(keys) >= 5
    assert set(keys) <= set(report), set(keys) - set(report)
    assert report["device"].startswith("cpu (smoke run") and report["quick"] is True
    assert report["fwdbwd_vs_eager_geomean"] > 0
