"""The public ``instance_norm`` op: PyTorch path numerics, input validation, backends, autocast, plan."""

import pytest
import torch
import torch.nn.functional as F

from cyclegan.ops import instance_norm, instance_norm_ref, instance_norm_stats_ref
from cyclegan.ops.plan import plan_launch


def seed_formula(x, weight=None, bias=None, eps=1e-5):
    """The seed document's from-scratch InstanceNorm, for any spatial rank."""
    dims = list(range(2, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=False)
    out = (x - mean) / torch.sqrt(var + eps)
    shape = (1, -1) + (1,) * len(dims)
    if weight is not None:
        out = weight.view(shape) * out + bias.view(shape)
    return out


@pytest.mark.parametrize("shape", [(2, 3, 17), (3, 5, 7, 13), (2, 3, 3, 4, 5)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_matches_functional_instance_norm_and_seed_formula(shape, backend):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3 - 1
    w = torch.rand(shape[1], generator=gen, dtype=torch.float64) + 0.5
    b = torch.randn(shape[1], generator=gen, dtype=torch.float64)
    expected = F.instance_norm(x, weight=w, bias=b, eps=1e-5)
    torch.testing.assert_close(seed_formula(x, w, b), expected)
    if backend == "torch":
        torch.testing.assert_close(instance_norm(x, w, b, backend="torch"), expected, rtol=1e-12, atol=1e-12)
    else:  # the kernels compute in fp32
        y = instance_norm(x.float(), w.float(), b.float(), backend="triton")
        torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=2e-5)


def test_activation_and_residual_are_applied_in_order():
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    r = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    base = seed_formula(x)
    torch.testing.assert_close(instance_norm(x, activation="relu", residual=r), base.clamp_min(0) + r)
    leaky = torch.where(base > 0, base, 0.3 * base) + r
    torch.testing.assert_close(
        instance_norm(x, activation="leaky_relu", negative_slope=0.3, residual=r), leaky
    )


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu"])
@pytest.mark.parametrize("path", ["pytorch_path", "reference"])
def test_gradcheck_in_fp64(path, activation, batch):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(3, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    b = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    r = torch.randn(batch, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    if path == "pytorch_path":
        fn = lambda *t: instance_norm(*t[:3], activation=activation, residual=t[3], backend="torch")
    else:
        fn = lambda *t: instance_norm_ref(*t[:3], activation=activation, residual=t[3])
    assert torch.autograd.gradcheck(fn, (x, w, b, r))


# (activation, weight, bias, residual): the seed layout's layers (ReLU, LeakyReLU, residual) and the rest.
CPU_PATH_VARIANTS = [
    (None, False, False, False),
    ("relu", True, True, False),
    ("leaky_relu", True, True, False),
    (None, True, True, True),
    ("relu", True, False, True),
    ("leaky_relu", False, False, True),
]


def forward_backward(fn, tensors, grad):
    """``fn`` on leaf copies of ``tensors`` (None stays None), backward with ``grad``: (y, grads)."""
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in tensors]
    y = fn(*leaves)
    y.backward(grad)
    return y.detach(), [t.grad if t is not None else None for t in leaves]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.float64, 1e-12)], ids=["fp32", "fp64"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("batch", [1, 3])
def test_pytorch_path_forward_backward_matches_reference(batch, channels_last, dtype, tol):
    """The ATen-based CPU path against the fp64 formula, output in the input's layout, every variant."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(4)
    shape = (batch, 5, 7, 13)
    for activation, has_w, has_b, has_r in CPU_PATH_VARIANTS:
        x = (torch.randn(shape, generator=gen) * 2 + 0.5).to(dtype, memory_format=memory_format)
        w = (torch.rand(5, generator=gen) + 0.5).to(dtype) if has_w else None
        b = torch.randn(5, generator=gen).to(dtype) if has_b else None
        r = torch.randn(shape, generator=gen).to(dtype, memory_format=memory_format) if has_r else None
        g = torch.randn(shape, generator=gen).to(dtype, memory_format=memory_format)
        ours = lambda *t, act=activation: instance_norm(
            *t[:3], activation=act, residual=t[3], backend="torch"
        )
        ref = lambda *t, act=activation: instance_norm_ref(*t[:3], activation=act, residual=t[3])
        y, grads = forward_backward(ours, (x, w, b, r), g)
        as64 = [t.double() if t is not None else None for t in (x, w, b, r)]
        y_ref, grads_ref = forward_backward(ref, as64, g.double())
        label = f"{activation} w={has_w} b={has_b} r={has_r}"
        assert y.dtype == dtype and y.is_contiguous(memory_format=memory_format), label
        names = ("y", "dx", "dweight", "dbias", "dresidual")
        for name, actual, expected in zip(names, (y, *grads), (y_ref, *grads_ref)):
            what = f"{name} {label}"
            assert (actual is None) == (expected is None), what
            if actual is not None:
                torch.testing.assert_close(
                    actual.double(), expected, rtol=tol / 2, atol=tol, msg=lambda m, what=what: f"{what}: {m}"
                )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize(
    "weight_dtype", [None, torch.float32, "input"], ids=["no_affine", "fp32_w", "same_w"]
)
def test_pytorch_path_keeps_fp32_statistics_for_low_precision_input(dtype, weight_dtype):
    """With fp32 statistics the output is the exact result rounded once: within half an ulp (plus fp32
    error). Statistics rounded to bf16 (ATen's choice for bf16 parameters or none) miss this by ~2x."""
    gen = torch.Generator().manual_seed(6)
    x = (torch.randn(2, 4, 9, 11, generator=gen) * 3 + 2).to(dtype)
    w = b = None
    if weight_dtype is not None:
        param_dtype = dtype if weight_dtype == "input" else weight_dtype
        w = (torch.rand(4, generator=gen) + 0.5).to(param_dtype)
        b = torch.randn(4, generator=gen).to(param_dtype)
    y = instance_norm(x, w, b, backend="torch")
    assert y.dtype == dtype
    expected = instance_norm_ref(x.double(), *(t.double() if t is not None else None for t in (w, b)))
    bound = (0.5 * torch.finfo(dtype).eps + 1e-5) * expected.abs() + 1e-5
    excess = (y.double() - expected).abs() - bound
    assert excess.max() <= 0, f"exceeds half an ulp by {excess.max().item():.3g}"


@pytest.mark.parametrize("batch", [1, 2])
def test_pytorch_path_leaves_input_and_residual_untouched(batch):
    """The activation and residual add run in place on the batch-norm output, not on the caller's tensors."""
    x = torch.randn(batch, 3, 5, 6)
    r = torch.randn(batch, 3, 5, 6)
    x_before, r_before = x.clone(), r.clone()
    for activation in (None, "relu", "leaky_relu"):
        y = instance_norm(x, activation=activation, residual=r, backend="torch")
        assert y.data_ptr() not in (x.data_ptr(), r.data_ptr())
        assert torch.equal(x, x_before) and torch.equal(r, r_before)


def test_pytorch_path_negative_leaky_slope_backward_matches_reference():
    """A negative LeakyReLU slope takes the out-of-place activation (autograd has no in-place backward)."""
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    g = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    kwargs = {"activation": "leaky_relu", "negative_slope": -0.1}
    y, (dx,) = forward_backward(lambda t: instance_norm(t, backend="torch", **kwargs), (x,), g)
    y_ref, (dx_ref,) = forward_backward(lambda t: instance_norm_ref(t, **kwargs), (x,), g)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-12, atol=1e-12)


def test_stats_helper_matches_two_pass_fp64():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64) + 7
    mean, rstd = instance_norm_stats_ref(x)
    torch.testing.assert_close(mean, x.mean(dim=(2, 3)))
    torch.testing.assert_close(rstd, 1 / torch.sqrt(x.var(dim=(2, 3), unbiased=False) + 1e-5))


def test_pytorch_path_is_stable_for_large_mean_planes():
    """Mean 1e4, std 1 in fp32: within a few fp32 ulps of the mean (ulp(1e4) ~ 1e-3); the sum/sum-of-squares
    variance would be off by whole units (ulp(1e8) = 8)."""
    x = (torch.randn(2, 3, 16, 16, dtype=torch.float64) + 1e4).float()
    y = instance_norm(x, backend="torch")
    torch.testing.assert_close(y.double(), seed_formula(x.double()), rtol=0, atol=5e-3)


@pytest.mark.parametrize("backend", ["auto", "torch", "triton"])
def test_empty_batch_returns_empty_result_through_autograd(backend):
    x = torch.randn(0, 4, 3, 3, requires_grad=True)
    w = torch.ones(4, requires_grad=True)
    y = instance_norm(x, w, torch.zeros(4), backend=backend)
    assert y.shape == (0, 4, 3, 3)
    y.sum().backward()
    assert x.grad.shape == x.shape and torch.equal(w.grad, torch.zeros(4))


def test_auto_backend_on_cpu_runs_pytorch_path(monkeypatch):
    import cyclegan.ops.triton_op as triton_op

    def fail(*args, **kwargs):
        raise AssertionError("the Triton path ran on a CPU tensor with backend='auto'")

    monkeypatch.setattr(triton_op, "instance_norm_triton", fail)
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(instance_norm(x), F.instance_norm(x))


def test_triton_backend_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="backend='triton' needs CUDA tensors"):
        instance_norm(torch.randn(1, 2, 3, 3), backend="triton")


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"x": torch.randn(2, 3)}, ValueError, "rank 3, 4 or 5"),
        ({"x": torch.randn(1, 2, 2, 2, 2, 2)}, ValueError, "rank 3, 4 or 5"),
        ({"x": torch.ones(2, 3, 4, 4, dtype=torch.int64)}, TypeError, "floating-point input"),
        ({"weight": torch.ones(4)}, ValueError, "weight must be 1-D with 3 elements"),
        ({"bias": torch.ones(3, 1)}, ValueError, "bias must be 1-D with 3 elements"),
        ({"weight": torch.ones(3, dtype=torch.int32)}, TypeError, "weight must be floating point"),
        ({"x": torch.randn(2, 3, 1, 1)}, ValueError, "more than 1 spatial element"),
        ({"x": torch.randn(2, 3, 1)}, ValueError, "more than 1 spatial element"),
        ({"residual": torch.randn(2, 3, 4, 5)}, ValueError, "residual must have the input's shape"),
        ({"residual": torch.ones(2, 3, 4, 4, dtype=torch.int64)}, TypeError, "residual must be floating"),
        ({"activation": "gelu"}, ValueError, "activation must be one of"),
        ({"backend": "cuda"}, ValueError, "backend must be one of"),
        ({"x": [[1.0, 2.0]]}, TypeError, "expects a tensor"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_bad_input_gets_a_clear_error(kwargs, error, match, backend):
    args = {"x": torch.randn(2, 3, 4, 4), "backend": backend, **kwargs}
    x = args.pop("x")
    with pytest.raises(error, match=match):
        instance_norm(x, **args)


def test_bad_path_is_rejected_by_the_plan():
    with pytest.raises(ValueError, match="path must be one of"):
        plan_launch(1, 3, 16, channels_last=False, elem_size=4, sm_count=1, backward=False, path="fast")


def test_residual_of_another_float_dtype_gives_output_in_input_dtype():
    x = torch.randn(2, 3, 4, 4, dtype=torch.bfloat16)
    r = torch.randn(2, 3, 4, 4)
    for backend in ("torch", "triton"):
        y = instance_norm(x, residual=r, backend=backend)
        assert y.dtype == torch.bfloat16
        expected = seed_formula(x.double()) + r.double()
        torch.testing.assert_close(y.double(), expected, rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_cpu_autocast_follows_the_input_dtype(backend):
    """Under autocast the op runs in the dtype it receives (bf16 conv output), with fp32 statistics."""
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    w = torch.nn.Parameter(torch.rand(4) + 0.5)
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(x)
        y = instance_norm(h, w, None, activation="relu", backend=backend)
    assert h.dtype == torch.bfloat16 and y.dtype == torch.bfloat16
    expected = instance_norm_ref(h.double(), w.double(), None, activation="relu")
    torch.testing.assert_close(y.double(), expected, rtol=1e-2, atol=1e-2)
    y.float().sum().backward()
    assert w.grad is not None and w.grad.dtype == torch.float32


class TestPlan:
    """The automatic path choice: split only when planes are large and too few to fill the GPU."""

    def plan(self, n, c, length, channels_last=False, sm_count=132, backward=False, elem_size=4):
        return plan_launch(
            n,
            c,
            length,
            channels_last=channels_last,
            elem_size=elem_size,
            sm_count=sm_count,
            backward=backward,
        )

    def test_batch_one_first_layer_is_split_across_programs(self):
        plan = self.plan(1, 64, 256 * 256)
        assert plan.is_split and plan.splits * 64 >= 2 * 132
        assert plan.chunk * plan.splits >= 256 * 256 > plan.chunk * (plan.splits - 1)

    def test_batch_one_channels_last_narrows_channel_tiles_to_fill_the_gpu(self):
        plan = self.plan(1, 64, 256 * 256, channels_last=True, elem_size=2)
        assert plan.is_split and plan.block_c == 16  # 32 contiguous bytes per row, not 128
        assert (64 // plan.block_c) * plan.splits >= 256

    def test_small_planes_stay_whole_in_one_register_tile(self):
        plan = self.plan(1, 512, 31 * 31)
        assert not plan.is_split and plan.one_tile and plan.block_l >= 961

    def test_many_large_planes_stream_without_split(self):
        plan = self.plan(16, 128, 128 * 128)
        assert not plan.is_split and not plan.one_tile

    def test_channels_last_tiles_cover_contiguous_channels(self):
        plan = self.plan(4, 256, 64 * 64, channels_last=True, elem_size=2)
        assert plan.block_c == 64
        plan = self.plan(4, 3, 64 * 64, channels_last=True)
        assert plan.block_c == 4

    def test_forced_paths(self):
        forced = plan_launch(
            2, 3, 91, channels_last=False, elem_size=4, sm_count=1, backward=True, path="split", chunk=24
        )
        assert forced.is_split and forced.splits == 4 and forced.chunk == 24 and forced.block_l == 16
        streamed = plan_launch(
            2, 3, 91, channels_last=False, elem_size=4, sm_count=1, backward=True, path="plane", chunk=16
        )
        assert not streamed.is_split and not streamed.one_tile and streamed.block_l == 16
        whole = plan_launch(
            1, 1, 1 << 20, channels_last=False, elem_size=4, sm_count=132, backward=False, path="plane"
        )
        assert not whole.is_split
