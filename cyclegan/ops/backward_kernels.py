"""Triton backward kernels for InstanceNorm with fused affine, activation and residual add.

With ``g = dL/dy``, ``x̂ = (x - mean) * rstd`` (recomputed from x and the saved fp32 mean/rstd),
``z = γ x̂ + β`` and ``gz = g * act'(z)``, each plane needs two sums, ``Σ gz`` and ``Σ gz x̂``; then
``dx = rstd * γ * (gz - (Σ gz + x̂ Σ gz x̂) / L)``, ``dβ = Σ_n Σ gz`` and ``dγ = Σ_n Σ gz x̂``
(``dresidual = g`` needs no kernel). Paths mirror the forward: a whole-plane kernel, or a split
pair where phase 1 writes per-chunk partial sums and phase 2 reduces them in a fixed order and writes
dx. Per-plane sums are reduced over the batch by ``instance_norm_bwd_param_kernel`` in a fixed order:
no atomics anywhere, so gradients are bitwise reproducible.
"""

import triton
import triton.language as tl

from cyclegan.ops.forward_kernels import (
    load_rows,
    partial_offsets,
    plane_pointer,
    program_chunk,
    program_tile,
    store_pair,
    store_rows,
)


@triton.jit
def plane_constants(
    W, B, Mean, Rstd, n, C, cols, cmask, HAS_W: tl.constexpr, HAS_B: tl.constexpr, BLOCK_C: tl.constexpr
):
    """The saved fp32 mean and rstd of planes ``cols`` of sample ``n``, with γ (1 without weight) and β
    (0 without bias) as fp32."""
    mean = tl.load(Mean + n * C + cols, mask=cmask, other=0.0)
    rstd = tl.load(Rstd + n * C + cols, mask=cmask, other=0.0)
    gamma = tl.full([BLOCK_C], 1.0, dtype=tl.float32)
    if HAS_W:
        gamma = tl.load(W + cols, mask=cmask, other=1.0).to(tl.float32)
    beta = tl.zeros([BLOCK_C], dtype=tl.float32)
    if HAS_B:
        beta = tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)
    return mean, rstd, gamma, beta


@triton.jit
def load_grad_tile(
    x_ptr,
    g_ptr,
    s_xl,
    s_gl,
    start,
    stop,
    cmask,
    mean,
    rstd,
    gamma,
    beta,
    slope,
    ACT: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """``x̂`` recomputed and ``gz = g * act'(z)`` (``z = γ x̂ + β``; ReLU: 1 where z > 0, LeakyReLU: 1 or
    slope) for rows ``[start, start + BLOCK_L)``, with the tile mask."""
    x, mask = load_rows(x_ptr, s_xl, start, stop, cmask, BLOCK_L)
    g, _ = load_rows(g_ptr, s_gl, start, stop, cmask, BLOCK_L)
    xhat = (x - mean[None, :]) * rstd[None, :]
    if ACT != 0:
        z = xhat * gamma[None, :] + beta[None, :]
        g = tl.where(z > 0, g, 0.0 if ACT == 1 else g * slope)
    return xhat, g, mask


@triton.jit
def store_input_grad(dx_ptr, s_dl, start, gz, xhat, mask, coef, mean_gz, mean_gzx, BLOCK_L: tl.constexpr):
    """Store ``dx = rstd γ (gz - mean(gz) - x̂ mean(gz x̂))`` (``coef = rstd γ``) at rows from ``start``."""
    dx = coef[None, :] * (gz - mean_gz[None, :] - xhat * mean_gzx[None, :])
    store_rows(dx_ptr, s_dl, start, dx, mask, BLOCK_L)


@triton.jit
def chunk_grad_sums(
    x_ptr,
    g_ptr,
    s_xl,
    s_gl,
    start,
    stop,
    cmask,
    mean,
    rstd,
    gamma,
    beta,
    slope,
    ACT: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """``Σ gz`` and ``Σ gz x̂`` over rows ``[start, stop)``, accumulated per tile element in a fixed order."""
    acc_gz = tl.zeros([BLOCK_L, BLOCK_C], dtype=tl.float32)
    acc_gzx = tl.zeros([BLOCK_L, BLOCK_C], dtype=tl.float32)
    for tile_start in range(start, stop, BLOCK_L):
        xhat, gz, mask = load_grad_tile(
            x_ptr, g_ptr, s_xl, s_gl, tile_start, stop, cmask, mean, rstd, gamma, beta, slope, ACT, BLOCK_L
        )
        acc_gz += gz
        acc_gzx += tl.where(mask, gz * xhat, 0.0)
    return tl.sum(acc_gz, axis=0), tl.sum(acc_gzx, axis=0)


@triton.jit
def write_input_grad(
    x_ptr,
    g_ptr,
    dx_ptr,
    s_xl,
    s_gl,
    s_dl,
    start,
    stop,
    cmask,
    mean,
    rstd,
    gamma,
    beta,
    sum_gz,
    sum_gzx,
    L,
    slope,
    ACT: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """Write ``dx = rstd γ (gz - (Σ gz + x̂ Σ gz x̂) / L)`` for rows ``[start, stop)``."""
    coef = rstd * gamma
    mean_gz = sum_gz / L
    mean_gzx = sum_gzx / L
    for tile_start in range(start, stop, BLOCK_L):
        xhat, gz, mask = load_grad_tile(
            x_ptr, g_ptr, s_xl, s_gl, tile_start, stop, cmask, mean, rstd, gamma, beta, slope, ACT, BLOCK_L
        )
        store_input_grad(dx_ptr, s_dl, tile_start, gz, xhat, mask, coef, mean_gz, mean_gzx, BLOCK_L)


@triton.jit
def instance_norm_bwd_plane_kernel(
    X,
    G,
    DX,
    W,
    B,
    Mean,
    Rstd,
    SumGz,
    SumGzx,
    C,
    L,
    s_xn,
    s_xc,
    s_xl,
    s_gn,
    s_gc,
    s_gl,
    s_dn,
    s_dc,
    s_dl,
    slope,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    ACT: tl.constexpr,
    ONE_TILE: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Whole-plane backward: dx for ``BLOCK_C`` planes of one sample, plus their sums for dγ/dβ."""
    n, cols, cmask, x_off = program_tile(C, s_xn, s_xc, BLOCK_C)
    x_ptr = X + x_off
    g_ptr = plane_pointer(G, n, cols, s_gn, s_gc)
    dx_ptr = plane_pointer(DX, n, cols, s_dn, s_dc)
    mean, rstd, gamma, beta = plane_constants(W, B, Mean, Rstd, n, C, cols, cmask, HAS_W, HAS_B, BLOCK_C)
    if ONE_TILE:
        xhat, gz, mask = load_grad_tile(
            x_ptr, g_ptr, s_xl, s_gl, 0, L, cmask, mean, rstd, gamma, beta, slope, ACT, BLOCK_L
        )
        sum_gz = tl.sum(gz, axis=0)
        sum_gzx = tl.sum(tl.where(mask, gz * xhat, 0.0), axis=0)
        store_input_grad(dx_ptr, s_dl, 0, gz, xhat, mask, rstd * gamma, sum_gz / L, sum_gzx / L, BLOCK_L)
    else:
        sum_gz, sum_gzx = chunk_grad_sums(
            x_ptr, g_ptr, s_xl, s_gl, 0, L, cmask, mean, rstd, gamma, beta, slope, ACT, BLOCK_L, BLOCK_C
        )
        write_input_grad(
            x_ptr,
            g_ptr,
            dx_ptr,
            s_xl,
            s_gl,
            s_dl,
            0,
            L,
            cmask,
            mean,
            rstd,
            gamma,
            beta,
            sum_gz,
            sum_gzx,
            L,
            slope,
            ACT,
            BLOCK_L,
        )
    store_pair(SumGz, SumGzx, n * C + cols, sum_gz, sum_gzx, cmask)


@triton.jit
def instance_norm_bwd_split_sums_kernel(
    X,
    G,
    W,
    B,
    Mean,
    Rstd,
    PartGz,
    PartGzx,
    C,
    L,
    CHUNK,
    s_xn,
    s_xc,
    s_xl,
    s_gn,
    s_gc,
    s_gl,
    slope,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    ACT: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Split backward, phase 1: ``Σ gz`` and ``Σ gz x̂`` over rows ``[s * CHUNK, (s + 1) * CHUNK)``."""
    n, cols, cmask, x_off = program_tile(C, s_xn, s_xc, BLOCK_C)
    split, num_splits, start, stop = program_chunk(CHUNK, L)
    g_ptr = plane_pointer(G, n, cols, s_gn, s_gc)
    mean, rstd, gamma, beta = plane_constants(W, B, Mean, Rstd, n, C, cols, cmask, HAS_W, HAS_B, BLOCK_C)
    sum_gz, sum_gzx = chunk_grad_sums(
        X + x_off,
        g_ptr,
        s_xl,
        s_gl,
        start,
        stop,
        cmask,
        mean,
        rstd,
        gamma,
        beta,
        slope,
        ACT,
        BLOCK_L,
        BLOCK_C,
    )
    store_pair(PartGz, PartGzx, (n * num_splits + split) * C + cols, sum_gz, sum_gzx, cmask)


@triton.jit
def instance_norm_bwd_split_dx_kernel(
    X,
    G,
    DX,
    W,
    B,
    Mean,
    Rstd,
    PartGz,
    PartGzx,
    SumGz,
    SumGzx,
    C,
    L,
    CHUNK,
    s_xn,
    s_xc,
    s_xl,
    s_gn,
    s_gc,
    s_gl,
    s_dn,
    s_dc,
    s_dl,
    slope,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    ACT: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Split backward, phase 2: reduce the plane's partial sums in a fixed order, write dx for this chunk."""
    n, cols, cmask, x_off = program_tile(C, s_xn, s_xc, BLOCK_C)
    split, num_splits, start, stop = program_chunk(CHUNK, L)
    _, pmask, part = partial_offsets(n, C, cols, cmask, num_splits, BLOCK_S)
    sum_gz = tl.sum(tl.load(PartGz + part, mask=pmask, other=0.0), axis=0)
    sum_gzx = tl.sum(tl.load(PartGzx + part, mask=pmask, other=0.0), axis=0)
    if split == 0:
        store_pair(SumGz, SumGzx, n * C + cols, sum_gz, sum_gzx, cmask)

    g_ptr = plane_pointer(G, n, cols, s_gn, s_gc)
    dx_ptr = plane_pointer(DX, n, cols, s_dn, s_dc)
    mean, rstd, gamma, beta = plane_constants(W, B, Mean, Rstd, n, C, cols, cmask, HAS_W, HAS_B, BLOCK_C)
    write_input_grad(
        X + x_off,
        g_ptr,
        dx_ptr,
        s_xl,
        s_gl,
        s_dl,
        start,
        stop,
        cmask,
        mean,
        rstd,
        gamma,
        beta,
        sum_gz,
        sum_gzx,
        L,
        slope,
        ACT,
        BLOCK_L,
    )


@triton.jit
def instance_norm_bwd_param_kernel(SumGz, SumGzx, DWeight, DBias, N, C, BLOCK_C: tl.constexpr):
    """``dβ_c = Σ_n Σ gz`` and ``dγ_c = Σ_n Σ gz x̂``: the per-plane sums reduced over the batch in order."""
    cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    acc_gz = tl.zeros([BLOCK_C], dtype=tl.float32)
    acc_gzx = tl.zeros([BLOCK_C], dtype=tl.float32)
    for n in range(0, N):
        acc_gz += tl.load(SumGz + n * C + cols, mask=cmask, other=0.0)
        acc_gzx += tl.load(SumGzx + n * C + cols, mask=cmask, other=0.0)
    tl.store(DBias + cols, acc_gz, mask=cmask)
    tl.store(DWeight + cols, acc_gzx, mask=cmask)
