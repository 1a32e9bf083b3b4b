"""The compiled Triton kernels on CUDA: parity with an fp64 reference, determinism, autocast.

Run with ``TRITON_INTERPRET=0 pytest -m gpu`` on a machine with a GPU; skipped otherwise.
"""

import pytest
import torch

from cyclegan.nn import InstanceNorm2d
from cyclegan.ops import instance_norm, instance_norm_ref
from cyclegan.ops.triton_op import instance_norm_triton

pytestmark = pytest.mark.gpu

SHAPES = [(1, 64, 256, 256), (4, 256, 64, 64), (2, 512, 31, 31), (3, 5, 7, 13), (2, 7, 1000)]


def make(shape, dtype, channels_last, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    randn = lambda *s: torch.randn(*s, generator=gen, device="cuda")
    x, r, g = randn(shape) * 2 + 1, randn(shape), randn(shape)
    if channels_last and len(shape) == 4:
        x, r, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, r, g))
    w = torch.rand(shape[1], generator=gen, device="cuda") + 0.5
    b = randn(shape[1])
    return [t.to(dtype) for t in (x, w, b, r, g)]


def forward_backward(fn, x, w, b, r, g):
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, b, r)]
    y = fn(*leaves)
    y.backward(g)
    return [y.detach()] + [t.grad for t in leaves]


@pytest.mark.parametrize("path", ["auto", "plane", "split"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-4), (torch.bfloat16, 3e-2)], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_kernels_match_fp64_reference(shape, dtype, tol, channels_last, path):
    x, w, b, r, g = make(shape, dtype, channels_last)
    ours = forward_backward(
        lambda *t: instance_norm_triton(*t[:3], 1e-5, "leaky_relu", 0.2, t[3], path=path), x, w, b, r, g
    )
    ref = forward_backward(
        lambda *t: instance_norm_ref(*t[:3], 1e-5, "leaky_relu", 0.2, t[3]),
        *(t.double() for t in (x, w, b, r, g)),
    )
    assert ours[0].stride() == x.stride()
    for name, a, e in zip(("y", "dx", "dweight", "dbias", "dresidual"), ours, ref):
        scale = 1.0 if name in ("y", "dx", "dresidual") else max(1.0, e.abs().max().item())
        torch.testing.assert_close(a.double(), e, rtol=tol, atol=tol * scale, msg=name)


@pytest.mark.parametrize("path", ["plane", "split"])
def test_backward_is_bitwise_deterministic_on_gpu(path):
    x, w, b, r, g = make((1, 64, 128, 128), torch.float32, True, seed=3)
    fn = lambda *t: instance_norm_triton(*t[:3], 1e-5, "relu", 0.2, t[3], path=path)
    first = forward_backward(fn, x, w, b, r, g)
    second = forward_backward(fn, x, w, b, r, g)
    for a, c in zip(first, second):
        assert torch.equal(a, c)


@pytest.mark.parametrize("path", ["plane", "split"])
def test_large_mean_planes_on_gpu(path):
    x = torch.randn(2, 8, 96, 96, device="cuda", dtype=torch.float64).add_(1e4).float()
    y = instance_norm_triton(x, path=path)
    torch.testing.assert_close(y.double(), instance_norm_ref(x.double()), rtol=0, atol=1e-4)


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


def test_auto_backend_uses_kernels_on_cuda():
    x = torch.randn(2, 3, 8, 8, device="cuda")
    torch.testing.assert_close(instance_norm(x), instance_norm(x, backend="torch"), rtol=1e-5, atol=1e-5)


def test_auto_backend_keeps_fp64_on_the_exact_pytorch_path():
    x = torch.randn(2, 3, 8, 8, device="cuda", dtype=torch.float64)
    y = instance_norm(x)
    var = x.var((2, 3), unbiased=False, keepdim=True)
    expected = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(var + 1e-5)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
