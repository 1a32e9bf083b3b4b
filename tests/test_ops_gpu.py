"""The public op and layers on CUDA: backend choice, fp64, autocast.

Run with ``TRITON_INTERPRET=0 pytest -m gpu`` on a machine with a GPU; skipped otherwise. The compiled
kernels' own checks (fp32 and bf16 against the fp64 reference, NCHW and channels_last, plane and split
paths, odd and CycleGAN shapes, determinism) are the ``cuda`` cases of test_ops_triton_kernels.py, and
``torch.compile(fullgraph=True)`` against eager is in test_ops_compile.py: the same test bodies that run
on CPU under the interpreter in every run of the suite.
"""

import pytest
import torch

import cyclegan.ops.instance_norm as public_op
from cyclegan.nn import InstanceNorm2d
from cyclegan.ops import instance_norm, instance_norm_ref

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_runs_in_the_conv_output_dtype(dtype):
    conv = torch.nn.Conv2d(8, 16, 3, padding=1).cuda()
    norm = InstanceNorm2d(16, affine=True, activation="relu").cuda()
    x = torch.randn(2, 8, 32, 32, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        h = conv(x)
        y = norm(h)
    assert h.dtype == dtype and y.dtype == dtype
    torch.testing.assert_close(
        y.double(), instance_norm_ref(h.double(), activation="relu"), rtol=2e-2, atol=2e-2
    )
    y.float().sum().backward()
    assert norm.weight.grad.dtype == torch.float32


def test_auto_backend_uses_kernels_on_cuda(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the PyTorch path ran on a CUDA tensor with backend='auto'")

    x = torch.randn(2, 3, 8, 8, device="cuda")
    expected = instance_norm(x, backend="torch")
    monkeypatch.setattr(public_op, "instance_norm_torch", fail)
    torch.testing.assert_close(instance_norm(x), expected, rtol=1e-5, atol=1e-5)


def test_auto_backend_keeps_fp64_on_the_exact_pytorch_path():
    x = torch.randn(2, 3, 8, 8, device="cuda", dtype=torch.float64)
    y = instance_norm(x)
    var = x.var((2, 3), unbiased=False, keepdim=True)
    expected = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(var + 1e-5)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
