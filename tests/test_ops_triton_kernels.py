"""The Triton InstanceNorm kernels against an fp64 reference, on either device by the same test bodies.

``cpu`` cases run the kernels through the Triton interpreter (every run of the suite); ``cuda`` cases are
``gpu``-marked and run the compiled kernels (``TRITON_INTERPRET=0 pytest -m gpu`` on a machine with a
GPU), so every GPU check here is a body already exercised on CPU. Covered: forward and backward on odd
shapes, both layouts, the whole-plane (one register tile and streamed) and split paths, every activation,
with and without affine and residual, fp32 to the reference's precision and bf16/fp16 within twice
PyTorch's own low-precision error, determinism, large-mean planes, layouts, empty batches. The fp64
reference is ``instance_norm_ref`` in fp64, itself checked against F.instance_norm, the seed formula and
gradcheck in test_ops_instance_norm.py.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from cyclegan.ops import instance_norm_ref, instance_norm_stats_ref, interpreter_enabled
from cyclegan.ops.triton_op import instance_norm_triton, plane_layout

ON_INTERPRETER = pytest.mark.skipif(
    not interpreter_enabled(), reason="kernels on CPU tensors need the interpreter: TRITON_INTERPRET=1"
)
# (path, chunk): one register tile per plane; the streamed loop with 16-row tiles; several programs
# per plane, each covering 24 rows in tiles of 16 + 8.
PATHS = [("plane", 0), ("plane", 16), ("split", 24)]
SHAPES = [(3, 5, 7, 13), (2, 3, 1, 97), (2, 20, 6, 6), (2, 4, 33), (2, 3, 3, 4, 5)]
# CycleGAN layer shapes at 256x256 (first/last layer, residual trunk, last PatchGAN layer), and odd ones.
GPU_SHAPES = [(1, 64, 256, 256), (4, 256, 64, 64), (2, 512, 31, 31), (3, 5, 7, 13), (2, 7, 1000)]
GPU_PATHS = [("auto", 0), ("plane", 0), ("split", 0)]
# (activation, weight, bias, residual): every activation, every flag, with and without each other.
VARIANTS = [
    (None, False, False, False),
    ("relu", True, True, True),
    ("leaky_relu", True, True, False),
    ("leaky_relu", False, False, True),
    ("relu", True, False, False),
]
# Each variant costs kernel compilations on a GPU: the cuda cases below compile about 200 kernel variants,
# roughly a minute at compile_check's 0.2-0.3 s each. fp32 checks all flags and the PatchGAN layer, bf16
# all flags.
GPU_VARIANTS = VARIANTS[1:3]


def label(value) -> str:
    if isinstance(value, tuple):
        return (
            "x".join(map(str, value)) if all(isinstance(v, int) for v in value) else f"{len(value)}variants"
        )
    return str(value)


def cases(cpu: list[tuple], cuda: list[tuple]) -> list:
    """pytest params ``(device, *case)``: ``cpu`` cases under the interpreter, ``cuda`` cases compiled."""
    return [
        pytest.param(device, *case, marks=mark, id="-".join(map(label, (device, *case))))
        for device, mark, device_cases in (("cpu", ON_INTERPRETER, cpu), ("cuda", pytest.mark.gpu, cuda))
        for case in device_cases
    ]


def to_layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``t`` in channels_last layout (strides (C*L, 1, C) over the (N, C, L) view) or unchanged."""
    if not channels_last:
        return t.contiguous()
    if t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t.transpose(1, 2).contiguous().transpose(1, 2)


def make_inputs(shape, dtype, channels_last, affine_w, affine_b, with_residual, seed=0, device="cpu"):
    """x, weight, bias, residual, grad on ``device``, drawn on CPU so every device gets the same values."""
    gen = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = to_layout(torch.randn(shape, generator=gen) * 2 + 0.5, channels_last)
    weight = torch.rand(c, generator=gen) + 0.5 if affine_w else None
    bias = torch.randn(c, generator=gen) if affine_b else None
    residual = to_layout(torch.randn(shape, generator=gen), channels_last) if with_residual else None
    grad = to_layout(torch.randn(shape, generator=gen), channels_last)
    return [
        t.to(device=device, dtype=dtype) if t is not None else None for t in (x, weight, bias, residual, grad)
    ]


def run_with_grads(fn, x, weight, bias, residual, grad):
    """Forward with leaf copies of every tensor, backward with ``grad``: (y, [grads of x, w, b, r])."""
    leaves = [
        t.detach().clone().requires_grad_() if t is not None else None for t in (x, weight, bias, residual)
    ]
    y = fn(*leaves)
    y.backward(grad)
    return y.detach(), [t.grad if t is not None else None for t in leaves]


def reference64(x, weight, bias, residual, grad, activation):
    as64 = lambda t: t.double() if t is not None else None
    fn = lambda x_, w_, b_, r_: instance_norm_ref(x_, w_, b_, 1e-5, activation, 0.2, r_)
    return run_with_grads(fn, as64(x), as64(weight), as64(bias), as64(residual), grad.double())


def triton_fn(activation, path, chunk):
    return lambda x, w, b, r: instance_norm_triton(x, w, b, 1e-5, activation, 0.2, r, path=path, chunk=chunk)


def sum_scale(shape) -> float:
    """How much wider dγ/dβ's atol is than an elementwise value's: they sum N*L terms, whose fp32 rounding
    grows like the square root of the count; 1 up to 1024 terms (every interpreter shape)."""
    return max(1.0, (shape[0] * math.prod(shape[2:]) / 1024) ** 0.5)


def assert_close_fp32(actual, expected, name, scale=1.0):
    """fp32 against fp64 to fp32 precision; ``scale`` widens atol for sums over large planes (dγ/dβ)."""
    assert actual.dtype == torch.float32, name
    torch.testing.assert_close(
        actual.double(), expected, rtol=1e-5, atol=2e-5 * scale, msg=lambda m: f"{name}: {m}"
    )


@pytest.mark.parametrize(
    "device,shape,path,chunk,variants",
    cases(
        [(shape, path, chunk, tuple(VARIANTS)) for shape in SHAPES for path, chunk in PATHS],
        [(shape, path, chunk, tuple(GPU_VARIANTS)) for shape in GPU_SHAPES for path, chunk in GPU_PATHS],
    ),
)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_fp32_forward_backward_matches_fp64_reference(device, shape, path, chunk, variants, channels_last):
    for activation, has_w, has_b, has_r in variants:
        inputs = make_inputs(shape, torch.float32, channels_last, has_w, has_b, has_r, device=device)
        y, grads = run_with_grads(triton_fn(activation, path, chunk), *inputs)
        y_ref, grads_ref = reference64(*inputs, activation)
        label_ = f"{activation} w={has_w} b={has_b} r={has_r}"
        assert y.stride() == inputs[0].stride(), label_
        assert_close_fp32(y, y_ref, f"y {label_}")
        for name, grad, grad_ref in zip(("dx", "dweight", "dbias", "dresidual"), grads, grads_ref):
            if grad_ref is None:
                assert grad is None
                continue
            scale = sum_scale(shape) if name in ("dweight", "dbias") else 1.0
            assert_close_fp32(grad, grad_ref, f"{name} {label_}", scale)


def torch_in_dtype(x, weight, bias, residual, activation):
    """What PyTorch computes in the low-precision dtype itself: the honest baseline for fp16/bf16."""
    y = F.instance_norm(x, weight=weight, bias=bias, eps=1e-5)
    if activation == "relu":
        y = F.relu(y)
    elif activation == "leaky_relu":
        y = F.leaky_relu(y, 0.2)
    return y + residual if residual is not None else y


@pytest.mark.parametrize(
    "device,dtype,shape,path,chunk,variants",
    cases(
        [
            (dtype, (3, 5, 7, 13), *path, tuple(VARIANTS[1:3]))
            for dtype in (torch.float16, torch.bfloat16)
            for path in PATHS[::2]
        ],
        [
            (torch.bfloat16, shape, *path, tuple(VARIANTS[1:2]))
            for shape in GPU_SHAPES
            for path in GPU_PATHS[1:]
        ],
    ),
)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_low_precision_error_at_most_twice_torch_in_that_dtype(
    device, dtype, shape, path, chunk, variants, channels_last
):
    """Elementwise: |ours - ref64| <= 2 |torch_in_dtype - ref64| + atol + one ulp of the value."""
    ulp = torch.finfo(dtype).eps
    for activation, has_w, has_b, has_r in variants:
        inputs = make_inputs(shape, dtype, channels_last, has_w, has_b, has_r, device=device)
        y, grads = run_with_grads(triton_fn(activation, path, chunk), *inputs)
        baseline = lambda *t, act=activation: torch_in_dtype(*t, act)
        base_y, base_grads = run_with_grads(baseline, *inputs)
        ref_y, ref_grads = reference64(*inputs, activation)
        pairs = [
            ("y", y, base_y, ref_y),
            *zip(("dx", "dweight", "dbias", "dresidual"), grads, base_grads, ref_grads),
        ]
        for name, ours, theirs, ref in pairs:
            if ref is None:
                continue
            assert ours.dtype == dtype, name
            bound = 2 * (theirs.double() - ref).abs() + 1e-4 + ulp * ref.abs()
            excess = (ours.double() - ref).abs() - bound
            assert excess.max() <= 0, f"{name} {activation}: exceeds bound by {excess.max().item():.3g}"


@pytest.mark.parametrize(
    "device,shape,path,chunk",
    cases([((2, 3, 9, 11), *p) for p in PATHS], [((2, 8, 96, 96), *p) for p in GPU_PATHS]),
)
def test_large_mean_planes_stay_exact_in_fp32(device, shape, path, chunk):
    """Mean 1e4, std 1: a sum/sum-of-squares variance would be garbage here."""
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) + 1e4).float().to(device)
    y = instance_norm_triton(x, path=path, chunk=chunk)
    ref = instance_norm_ref(x.double())
    torch.testing.assert_close(y.double(), ref, rtol=0, atol=1e-4)
    ref_mean, ref_rstd = instance_norm_stats_ref(x.double())
    _, mean, rstd = torch.ops.cyclegan.instance_norm_fwd(x, None, None, None, 1e-5, None, 0.2, path, chunk)
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-7, atol=0)
    torch.testing.assert_close(rstd.double(), ref_rstd, rtol=1e-4, atol=0)


@pytest.mark.parametrize(
    "device,shape,path,chunk",
    cases(
        [((3, 6, 9, 10), "plane", 16), ((3, 6, 9, 10), "split", 24)],
        [((1, 64, 128, 128), "plane", 0), ((1, 64, 128, 128), "split", 0)],
    ),
)
def test_backward_is_bitwise_deterministic(device, shape, path, chunk):
    inputs = make_inputs(shape, torch.float32, True, True, True, True, seed=5, device=device)
    fn = triton_fn("leaky_relu", path, chunk)
    first = run_with_grads(fn, *inputs)
    second = run_with_grads(fn, *inputs)
    assert torch.equal(first[0], second[0])
    for a, b_ in zip(first[1], second[1]):
        assert torch.equal(a, b_)


@pytest.mark.parametrize("device", cases([()], [()]))
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_layout_is_kept_without_a_copy(device, channels_last):
    x, w, b, r, _ = make_inputs((2, 6, 5, 7), torch.float32, channels_last, True, True, True, device=device)
    layout_x, strides, is_cl = plane_layout(x)
    assert layout_x is x and is_cl == channels_last
    assert strides == ((6 * 35, 1, 6) if channels_last else (6 * 35, 35, 1))
    y = instance_norm_triton(x, w, b, 1e-5, "relu", 0.2, r)
    assert y.stride() == x.stride()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    assert y.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("device", cases([()], [()]))
def test_other_layouts_are_made_contiguous(device):
    base = torch.randn(2, 3, 8, 10, device=device)
    x = base[:, :, ::2, :]  # strided view: neither NCHW- nor channels_last-contiguous
    assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    y = instance_norm_triton(x)
    torch.testing.assert_close(y.double(), instance_norm_ref(x.double()), rtol=1e-5, atol=2e-5)
    assert y.is_contiguous()


@pytest.mark.parametrize("device", cases([()], [()]))
def test_mixed_layouts_of_input_residual_and_grad(device):
    x, w, b, _, _ = make_inputs((2, 4, 5, 6), torch.float32, True, True, True, False, device=device)
    r = torch.randn(2, 4, 5, 6, device=device)
    g = torch.randn(2, 4, 5, 6, device=device)
    y, grads = run_with_grads(triton_fn("relu", "plane", 0), x, w, b, r, g)
    y_ref, grads_ref = reference64(x, w, b, r, g, "relu")
    assert_close_fp32(y, y_ref, "y")
    for grad, grad_ref in zip(grads, grads_ref):
        assert_close_fp32(grad, grad_ref, "grad")


@pytest.mark.parametrize(
    "device,path,chunk", cases([("plane", 0), ("split", 24)], [("plane", 0), ("split", 0)])
)
def test_empty_batch_through_autograd(device, path, chunk):
    x = torch.randn(0, 3, 4, 5, device=device, requires_grad=True)
    w = torch.ones(3, device=device, requires_grad=True)
    b = torch.zeros(3, device=device, requires_grad=True)
    y = instance_norm_triton(x, w, b, path=path, chunk=chunk)
    assert y.shape == (0, 3, 4, 5)
    y.sum().backward()
    assert x.grad.shape == x.shape
    zeros = torch.zeros(3, device=device)
    assert torch.equal(w.grad, zeros) and torch.equal(b.grad, zeros)


@pytest.mark.parametrize("device", cases([()], [()]))
def test_input_passed_as_its_own_residual(device):
    x = torch.randn(2, 3, 5, 6, device=device, requires_grad=True)
    y = instance_norm_triton(x, residual=x)
    torch.testing.assert_close(y, instance_norm_ref(x) + x, rtol=1e-5, atol=2e-5)
    y.backward(torch.ones_like(y))
    x_ref = x.detach().clone().requires_grad_()
    (instance_norm_ref(x_ref) + x_ref).backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=2e-5)
