"""Compilation: ``torch.compile(fullgraph=True)`` of a network using our ops (CPU and CUDA), and the
kernels lowered to CUDA binaries on a machine without a GPU.

On CPU the kernels run under the Triton interpreter, where ``wrap_triton`` cannot trace interpreted
kernels, so the ops are opaque ``custom_op``s there (see cyclegan/ops/triton_op.py): the CPU test checks
the op schema, fake implementations and autograd registration compile without graph breaks; the GPU test
checks the same with ``triton_op`` and the kernels inlined into inductor's graph.
"""

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from cyclegan.nn import InstanceNorm2d


class TinyResidualNet(nn.Module):
    """conv -> IN+ReLU -> conv -> IN (+ residual): the pattern of a CycleGAN residual block."""

    def __init__(self, channels: int, backend: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = InstanceNorm2d(channels, affine=True, activation="relu", backend=backend)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = InstanceNorm2d(channels, affine=True, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.conv2(self.norm1(self.conv1(x))), residual=x)


def compiled_matches_eager(device: str, dtype: torch.dtype = torch.float32, atol: float = 1e-4) -> None:
    torch.manual_seed(0)
    eager = TinyResidualNet(4, backend="triton").to(device)
    with torch.no_grad():
        for norm in (eager.norm1, eager.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    compiled_net = TinyResidualNet(4, backend="triton").to(device)
    compiled_net.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_net, fullgraph=True)
    x = torch.randn(2, 4, 8, 8, device=device, dtype=dtype)
    with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
        y_eager = eager(x)
        y_compiled = compiled(x)
    torch.testing.assert_close(y_compiled, y_eager, rtol=atol, atol=atol)
    y_eager.float().square().mean().backward()
    y_compiled.float().square().mean().backward()
    for (name, p_eager), p_compiled in zip(eager.named_parameters(), compiled_net.parameters()):
        torch.testing.assert_close(p_compiled.grad, p_eager.grad, rtol=atol, atol=atol, msg=name)


def test_compile_fullgraph_on_cpu_through_the_interpreter():
    torch._dynamo.reset()
    compiled_matches_eager("cpu")


def test_kernels_lower_to_cuda_and_triton_ops_trace_without_a_gpu():
    """What the interpreter cannot show: every kernel variant builds for sm_90 (Triton's LLVM + ptxas), and
    the real triton_op bodies trace under AOTAutograd into functional kernel nodes that clone exactly the
    tensors each kernel writes (what inductor sees on a GPU)."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "cyclegan.ops.compile_check", "--arch", "90"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "compiled 98 kernel variants for sm_90" in result.stdout
    assert "traced 8 kernel launches" in result.stdout
    clones = [line.split("clones ")[1] for line in result.stdout.splitlines() if "clones" in line]
    forward_split = ["['PartMean', 'PartM2']", "['Y', 'Mean', 'Rstd']"]
    backward = ["['DX', 'SumGz', 'SumGzx']", "['DWeight', 'DBias']"]
    expected = [*forward_split, "['PartGz', 'PartGzx']", *backward, "['Y', 'Mean', 'Rstd']", *backward]
    assert clones == expected


@pytest.mark.gpu
def test_compile_fullgraph_on_cuda_with_triton_op():
    torch._dynamo.reset()
    compiled_matches_eager("cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_compile_fullgraph_on_cuda_under_autocast(dtype):
    torch._dynamo.reset()
    compiled_matches_eager("cuda", dtype, atol=3e-2)
