"""The Triton backward kernels of InstanceNorm with fused affine, activation and residual add.

With ``g = dL/dy``, ``x̂ = (x - mean) * rstd`` (recomputed from x and the saved fp32 mean/rstd),
``z = γ x̂ + β`` and ``gz = g * act'(z)``, each plane needs two sums, ``Σ gz`` and ``Σ gz x̂``; then
``dx = rstd * γ * (gz - (Σ gz + x̂ Σ gz x̂) / L)``, ``dβ = Σ_n Σ gz`` and ``dγ = Σ_n Σ gz x̂``
(``dresidual = g`` needs no kernel).

``instance_norm_bwd_kernel`` is launched per ``STEP`` as the forward kernel is: ``"tile"``/``"stream"``
compute a whole plane's sums and its dx; on the split path ``"partials"`` writes each chunk's sums and
``"merge"`` reduces them in a fixed order before writing its chunk's dx. ``instance_norm_bwd_param_kernel``
then reduces the per-plane sums over the batch in order into dγ and dβ. No atomics anywhere, so gradients
are bitwise reproducible.
"""

import triton
import triton.language as tl

from cyclegan.ops import kernel_helpers as kh


@triton.jit
def plane_constants(W, B, Mean, Rstd, n, C, cols, cmask, HAS_W: tl.constexpr, HAS_B: tl.constexpr):
    """The saved fp32 mean and rstd of planes ``cols`` of sample ``n``, with γ (1 without weight) and β
    (0 without bias) as fp32."""
    mean = tl.load(Mean + n * C + cols, mask=cmask, other=0.0)
    rstd = tl.load(Rstd + n * C + cols, mask=cmask, other=0.0)
    gamma = tl.full(rstd.shape, 1.0, dtype=tl.float32)
    if HAS_W:
        gamma = tl.load(W + cols, mask=cmask, other=1.0).to(tl.float32)
    beta = tl.zeros_like(rstd)
    if HAS_B:
        beta = tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)
    return mean, rstd, gamma, beta


@triton.jit
def grad_terms(x, g, mean, rstd, gamma, beta, slope, ACTIVATION: tl.constexpr):
    """``x̂`` and ``gz = g * act'(γ x̂ + β)`` of a tile of x and g."""
    xhat = (x - mean[None, :]) * rstd[None, :]
    return xhat, kh.activation_gate(g, xhat * gamma[None, :] + beta[None, :], slope, ACTIVATION)


@triton.jit
def input_grad(gz, xhat, coef, mean_gz, mean_gzx):
    """``dx = rstd γ (gz - mean(gz) - x̂ mean(gz x̂))`` with ``coef = rstd γ``."""
    return coef[None, :] * (gz - mean_gz[None, :] - xhat * mean_gzx[None, :])


@triton.jit
def instance_norm_bwd_kernel(
    X, G, DX, W, B, Mean, Rstd, PartGz, PartGzx, SumGz, SumGzx,  # G and DX have X's strides
    C, L, CHUNK, s_n, s_c, s_l,  # CHUNK == L on the whole-plane path
    slope,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, ACTIVATION: tl.constexpr,
    STEP: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """One ``STEP`` over this program's rows of ``BLOCK_C`` planes of one sample. Outside ``"partials"``,
    program ``(p, 0)`` stores the planes' ``Σ gz`` and ``Σ gz x̂`` for dγ/dβ."""
    n, cols, cmask = kh.program_planes(C, BLOCK_C)
    x_ptr = kh.plane_pointer(X, n, cols, s_n, s_c)
    g_ptr = kh.plane_pointer(G, n, cols, s_n, s_c)
    start, stop = kh.program_rows(CHUNK, L)
    mean, rstd, gamma, beta = plane_constants(W, B, Mean, Rstd, n, C, cols, cmask, HAS_W, HAS_B)
    if STEP == "merge":
        _, pmask, offsets = kh.partial_offsets(n, C, cols, cmask, BLOCK_S)
        sum_gz = tl.sum(tl.load(PartGz + offsets, mask=pmask, other=0.0), axis=0)
        sum_gzx = tl.sum(tl.load(PartGzx + offsets, mask=pmask, other=0.0), axis=0)
    elif STEP == "tile":
        rows, mask = kh.row_tile(0, L, cmask, BLOCK_L)
        x, g = kh.load_tile(x_ptr, rows, s_l, mask), kh.load_tile(g_ptr, rows, s_l, mask)
        xhat, gz = grad_terms(x, g, mean, rstd, gamma, beta, slope, ACTIVATION)
        sum_gz = tl.sum(gz, axis=0)
        sum_gzx = tl.sum(tl.where(mask, gz * xhat, 0.0), axis=0)
    else:  # accumulated per tile element over rows [start, stop), in a fixed order
        acc_gz = tl.zeros([BLOCK_L, BLOCK_C], dtype=tl.float32)
        acc_gzx = tl.zeros([BLOCK_L, BLOCK_C], dtype=tl.float32)
        for tile_start in range(start, stop, BLOCK_L):
            rows, mask = kh.row_tile(tile_start, stop, cmask, BLOCK_L)
            x, g = kh.load_tile(x_ptr, rows, s_l, mask), kh.load_tile(g_ptr, rows, s_l, mask)
            xhat, gz = grad_terms(x, g, mean, rstd, gamma, beta, slope, ACTIVATION)
            acc_gz += gz
            acc_gzx += tl.where(mask, gz * xhat, 0.0)
        sum_gz = tl.sum(acc_gz, axis=0)
        sum_gzx = tl.sum(acc_gzx, axis=0)

    if STEP == "partials":
        kh.store_pair(PartGz, PartGzx, kh.own_partial_offsets(n, C, cols), sum_gz, sum_gzx, cmask)
    else:
        if tl.program_id(1) == 0:
            kh.store_pair(SumGz, SumGzx, n * C + cols, sum_gz, sum_gzx, cmask)
        coef = rstd * gamma
        mean_gz = sum_gz / L
        mean_gzx = sum_gzx / L
        dx_ptr = kh.plane_pointer(DX, n, cols, s_n, s_c)
        if STEP == "tile":
            kh.store_tile(dx_ptr, rows, s_l, input_grad(gz, xhat, coef, mean_gz, mean_gzx), mask)
        else:
            for tile_start in range(start, stop, BLOCK_L):
                rows, mask = kh.row_tile(tile_start, stop, cmask, BLOCK_L)
                x, g = kh.load_tile(x_ptr, rows, s_l, mask), kh.load_tile(g_ptr, rows, s_l, mask)
                xhat, gz = grad_terms(x, g, mean, rstd, gamma, beta, slope, ACTIVATION)
                kh.store_tile(dx_ptr, rows, s_l, input_grad(gz, xhat, coef, mean_gz, mean_gzx), mask)


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
