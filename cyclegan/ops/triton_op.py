"""The InstanceNorm Triton path as ``torch.library`` ops with autograd, traceable by ``torch.compile``.

``cyclegan::instance_norm_fwd`` returns ``(y, mean, rstd)`` and ``cyclegan::instance_norm_bwd`` returns
``(dx, dweight, dbias)``; both launch kernels through ``torch.library.wrap_triton`` so inductor sees
them without graph breaks. Under ``TRITON_INTERPRET=1`` ``@triton.jit`` yields interpreted functions
that ``wrap_triton`` cannot trace, so the same bodies are registered as opaque ``custom_op``s instead:
eager, autograd and ``torch.compile`` (calling the op as a black box) all still run the real kernels.
(No ``from __future__ import annotations`` here: ``torch.library`` infers the op schemas from the
annotations, which older torch versions read best as real objects.)

Autocast: the ops have no autocast rule, so they run in the dtype of ``x`` (the conv output under
autocast); statistics are always fp32, weight/bias/residual of any float dtype are read as fp32 and
the output has ``x``'s dtype.
"""

import functools
import math

import torch
import triton
from torch import Tensor

from cyclegan.ops import backward_kernels as bk
from cyclegan.ops import forward_kernels as fk
from cyclegan.ops.plan import LaunchPlan, plan_launch
from cyclegan.ops.triton_support import interpreter_enabled

if interpreter_enabled():
    _define_op = functools.partial(torch.library.custom_op, mutates_args=())
else:
    _define_op = functools.partial(torch.library.triton_op, mutates_args=())


def _launch(kernel, grid: tuple[int, ...], **kwargs) -> None:
    torch.library.wrap_triton(kernel)[grid](**kwargs)


def _affine(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> dict[str, Tensor | bool]:
    """Contiguous weight and bias with their ``HAS_W``/``HAS_B`` flags; an absent one is replaced by ``x``,
    which the kernels then never read."""
    return {
        "W": weight.contiguous() if weight is not None else x,
        "B": bias.contiguous() if bias is not None else x,
        "HAS_W": weight is not None,
        "HAS_B": bias is not None,
    }


def _partials(x: Tensor, plan: LaunchPlan) -> tuple[Tensor, Tensor]:
    """Two fp32 ``(N, splits, C)`` buffers for the split path's per-chunk partial results; on the
    whole-plane path, ``x`` twice (never read)."""
    if not plan.is_split:
        return x, x
    first = torch.empty((x.shape[0], plan.splits, x.shape[1]), device=x.device, dtype=torch.float32)
    return first, torch.empty_like(first)


def _is_channels_last(t: Tensor) -> bool:
    """Spatial positions contiguous-by-channel: strides ``(C*L, 1, C)`` over the ``(N, C, L)`` view."""
    if t.dim() == 4:
        return t.is_contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        return t.is_contiguous(memory_format=torch.channels_last_3d)
    n, c, length = t.shape
    return (
        (c == 1 or t.stride(1) == 1)
        and (length == 1 or t.stride(2) == c)
        and (n == 1 or t.stride(0) == c * length)
    )


def plane_layout(t: Tensor) -> tuple[Tensor, tuple[int, int, int], bool]:
    """``t`` (copied only if neither NCHW- nor channels_last-contiguous) with its ``(s_n, s_c, s_l)`` strides
    over the ``(N, C, L)`` view, and whether the layout is channels_last."""
    c = t.shape[1]
    length = math.prod(t.shape[2:])
    if t.is_contiguous():
        return t, (c * length, length, 1), False
    if _is_channels_last(t):
        return t, (c * length, 1, c), True
    return t.contiguous(), (c * length, length, 1), False


def in_layout_of(t: Tensor, x: Tensor, x_strides: tuple[int, int, int]) -> Tensor:
    """``t`` with the strides of ``x`` (as ``plane_layout`` gave them), copied only when its own differ: the
    kernels read the residual and the output gradient through x's strides."""
    t, strides, _ = plane_layout(t)
    return t if strides == x_strides else torch.empty_like(x, dtype=t.dtype).copy_(t)


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _device_sm_count(device: torch.device) -> int:
    """SMs of a CUDA device; under the interpreter (CPU) one, so ``auto`` keeps whole planes."""
    if device.type != "cuda":
        return 1
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


def _plan(x: Tensor, channels_last: bool, backward: bool, path: str, chunk: int) -> LaunchPlan:
    return plan_launch(
        x.shape[0],
        x.shape[1],
        math.prod(x.shape[2:]),
        channels_last=channels_last,
        elem_size=x.element_size(),
        sm_count=_device_sm_count(x.device),
        backward=backward,
        path=path,
        chunk=chunk,
    )


def _grid(x: Tensor, plan: LaunchPlan) -> tuple[int, int]:
    """One program per (sample, channel block) and chunk of rows."""
    return x.shape[0] * triton.cdiv(x.shape[1], plan.block_c), plan.splits


def _plane_args(x: Tensor, x_strides: tuple[int, int, int], plan: LaunchPlan) -> dict[str, int]:
    """The sizes, strides, tile shape and warp count both plane kernels are launched with."""
    sizes = {"C": x.shape[1], "L": math.prod(x.shape[2:]), "CHUNK": plan.chunk}
    strides = dict(zip(("s_n", "s_c", "s_l"), x_strides))
    tiles = {"BLOCK_S": triton.next_power_of_2(plan.splits), "BLOCK_L": plan.block_l, "BLOCK_C": plan.block_c}
    return {**sizes, **strides, **tiles, "num_warps": plan.num_warps}


def _empty_stats(x: Tensor) -> Tensor:
    return torch.empty(x.shape[:2], device=x.device, dtype=torch.float32)


@_define_op("cyclegan::instance_norm_fwd")
def instance_norm_fwd(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    residual: Tensor | None,
    eps: float,
    activation: str | None,
    negative_slope: float,
    path: str,
    chunk: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(y, mean, rstd)``: the fused InstanceNorm output in ``x``'s layout and the fp32 plane statistics."""
    x, x_strides, channels_last = plane_layout(x)
    y = torch.empty_like(x)  # x's strides
    mean, rstd = _empty_stats(x), _empty_stats(x)
    if x.numel() == 0:
        return y, mean, rstd
    plan = _plan(x, channels_last, backward=False, path=path, chunk=chunk)
    part_mean, part_m2 = _partials(x, plan)
    args = {
        "X": x,
        "Y": y,
        **_affine(x, weight, bias),
        # an absent residual is replaced by x, which the kernel then never reads
        "R": in_layout_of(residual, x, x_strides) if residual is not None else x,
        "Mean": mean,
        "Rstd": rstd,
        "PartMean": part_mean,
        "PartM2": part_m2,
        "eps": eps,
        "slope": negative_slope,
        "HAS_R": residual is not None,
        "ACTIVATION": activation,
        **_plane_args(x, x_strides, plan),
    }
    for step in plan.steps:
        _launch(fk.instance_norm_fwd_kernel, _grid(x, plan), **args, STEP=step)
    return y, mean, rstd


@_define_op("cyclegan::instance_norm_bwd")
def instance_norm_bwd(
    grad_y: Tensor,
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    mean: Tensor,
    rstd: Tensor,
    activation: str | None,
    negative_slope: float,
    path: str,
    chunk: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dweight, dbias)``; dweight/dbias are fp32 sums over the batch (computed even without affine)."""
    x, x_strides, channels_last = plane_layout(x)
    dx = torch.empty_like(x)  # x's strides
    n, c = x.shape[:2]
    if x.numel() == 0:
        zeros = torch.zeros(c, device=x.device, dtype=torch.float32)
        return dx, zeros, zeros.clone()
    plan = _plan(x, channels_last, backward=True, path=path, chunk=chunk)
    part_gz, part_gzx = _partials(x, plan)
    sum_gz, sum_gzx = _empty_stats(x), _empty_stats(x)
    args = {
        "X": x,
        "G": in_layout_of(grad_y, x, x_strides),
        "DX": dx,
        **_affine(x, weight, bias),
        "Mean": mean,
        "Rstd": rstd,
        "PartGz": part_gz,
        "PartGzx": part_gzx,
        "SumGz": sum_gz,
        "SumGzx": sum_gzx,
        "slope": negative_slope,
        "ACTIVATION": activation,
        **_plane_args(x, x_strides, plan),
    }
    for step in plan.steps:
        _launch(bk.instance_norm_bwd_kernel, _grid(x, plan), **args, STEP=step)
    # The param kernel writes every channel of dweight and dbias.
    dweight = torch.empty(c, device=x.device, dtype=torch.float32)
    dbias = torch.empty(c, device=x.device, dtype=torch.float32)
    block_c = min(triton.next_power_of_2(c), 1024)
    _launch(
        bk.instance_norm_bwd_param_kernel,
        (triton.cdiv(c, block_c),),
        SumGz=sum_gz,
        SumGzx=sum_gzx,
        DWeight=dweight,
        DBias=dbias,
        N=n,
        C=c,
        BLOCK_C=block_c,
    )
    return dx, dweight, dbias


def _fwd_fake(x, weight, bias, residual, eps, activation, negative_slope, path, chunk):
    x, _, _ = plane_layout(x)
    return torch.empty_like(x), _empty_stats(x), _empty_stats(x)


def _bwd_fake(grad_y, x, weight, bias, mean, rstd, activation, negative_slope, path, chunk):
    x, _, _ = plane_layout(x)
    c = x.shape[1]
    return torch.empty_like(x), x.new_empty(c, dtype=torch.float32), x.new_empty(c, dtype=torch.float32)


if interpreter_enabled():
    instance_norm_fwd.register_fake(_fwd_fake)
    instance_norm_bwd.register_fake(_bwd_fake)


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, residual, _eps, activation, negative_slope, path, chunk = inputs
    _y, mean, rstd = output
    ctx.save_for_backward(x, weight, bias, mean, rstd)
    ctx.mark_non_differentiable(mean, rstd)
    ctx.activation, ctx.negative_slope, ctx.path, ctx.chunk = activation, negative_slope, path, chunk
    ctx.residual_dtype = residual.dtype if residual is not None else None


def _backward(ctx, grad_y, _grad_mean, _grad_rstd):
    x, weight, bias, mean, rstd = ctx.saved_tensors
    dx, dweight, dbias = torch.ops.cyclegan.instance_norm_bwd(
        grad_y, x, weight, bias, mean, rstd, ctx.activation, ctx.negative_slope, ctx.path, ctx.chunk
    )
    dweight = dweight.to(weight.dtype) if weight is not None and ctx.needs_input_grad[1] else None
    dbias = dbias.to(bias.dtype) if bias is not None and ctx.needs_input_grad[2] else None
    dresidual = grad_y.to(ctx.residual_dtype) if ctx.needs_input_grad[3] else None
    return dx, dweight, dbias, dresidual, None, None, None, None, None


instance_norm_fwd.register_autograd(_backward, setup_context=_setup_context)


def instance_norm_triton(
    x: Tensor,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    activation: str | None = None,
    negative_slope: float = 0.2,
    residual: Tensor | None = None,
    *,
    path: str = "auto",
    chunk: int = 0,
) -> Tensor:
    """Run the Triton kernels (arguments already validated by ``instance_norm``).

    ``path``/``chunk`` are for tests and benchmarks: ``"plane"`` or ``"split"`` force a path (see
    ``plan_launch``); ``"auto"`` lets the heuristic choose.
    """
    if not x.is_cuda and not interpreter_enabled():
        raise RuntimeError(
            f"instance_norm backend='triton' needs CUDA tensors, got a tensor on {x.device}; use "
            "backend='auto' or 'torch' on CPU (or set TRITON_INTERPRET=1 before importing triton to run "
            "the kernels through the Triton interpreter)"
        )
    y, _mean, _rstd = torch.ops.cyclegan.instance_norm_fwd(
        x, weight, bias, residual, float(eps), activation, float(negative_slope), path, int(chunk)
    )
    return y
