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


@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu"])
def test_gradcheck_of_pytorch_path_in_fp64(activation):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(3, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    b = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    fn = lambda *t: instance_norm(*t[:3], activation=activation, residual=t[3], backend="torch")
    assert torch.autograd.gradcheck(fn, (x, w, b, r))


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
