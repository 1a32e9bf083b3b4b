"""Triton forward kernels for InstanceNorm with fused affine, activation and residual add.

Every kernel sees the input as ``(N, C, L)`` through explicit strides ``(s_n, s_c, s_l)``: NCHW has
``s_l == 1`` and channels_last has ``s_c == 1, s_l == C``. A program works on a tile of
``BLOCK_L`` spatial rows x ``BLOCK_C`` channels of one sample, so loads are contiguous along whichever
axis is contiguous in memory. Statistics are fp32 and numerically stable: values are taken relative to
the plane's first element (the pivot), each tile's mean and squared deviations are computed in
registers, and tiles are merged with Chan's formula in a fixed order (no sum of squares, no atomics).

Two paths:
- whole plane (``instance_norm_fwd_plane_kernel``): one program per (sample, channel block); the plane
  stays in registers when it fits (``ONE_TILE``), otherwise it is streamed twice (stats, normalize).
- split (``instance_norm_fwd_split_stats_kernel`` + ``instance_norm_fwd_split_norm_kernel``): ``S``
  programs share each plane; phase 1 writes per-chunk (mean, M2), phase 2 merges them (every program
  the same way, so deterministically) and normalizes its chunk.
"""

import triton
import triton.language as tl


@triton.jit
def apply_activation(z, slope, ACT: tl.constexpr):
    """The fused activation by code: 0 identity, 1 ReLU, 2 LeakyReLU(slope)."""
    if ACT == 1:
        z = tl.where(z > 0, z, 0.0)
    elif ACT == 2:
        z = tl.where(z > 0, z, z * slope)
    return z


@triton.jit
def plane_pointer(P, n, cols, s_n, s_c):
    """Pointer to row 0 of planes ``cols`` of sample ``n`` (a 1 x channels block)."""
    return P + n * s_n + cols.to(tl.int64)[None, :] * s_c


@triton.jit
def program_tile(C, s_n, s_c, BLOCK_C: tl.constexpr):
    """Sample index (int64), channel indices and mask, and the (sample, channel) offset of this program."""
    pid = tl.program_id(0)
    num_cblocks = tl.cdiv(C, BLOCK_C)
    n = (pid // num_cblocks).to(tl.int64)
    cols = (pid % num_cblocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    offset = n * s_n + cols.to(tl.int64)[None, :] * s_c
    return n, cols, cmask, offset


@triton.jit
def program_chunk(CHUNK, L):
    """Split path: this program's split index, the number of splits and its rows ``[start, stop)``."""
    split = tl.program_id(1)
    num_splits = tl.num_programs(1)
    start = split * CHUNK
    stop = tl.minimum(start + CHUNK, L)
    return split, num_splits, start, stop


@triton.jit
def partial_offsets(n, C, cols, cmask, num_splits, BLOCK_S: tl.constexpr):
    """Split path: offsets and mask of every chunk's partials of planes ``cols`` (splits x channels)."""
    parts = tl.arange(0, BLOCK_S)
    pmask = (parts < num_splits)[:, None] & cmask[None, :]
    offsets = (n * num_splits + parts[:, None]) * C + cols[None, :]
    return parts, pmask, offsets


@triton.jit
def store_pair(A, B, offsets, a, b, mask):
    """Store two per-plane fp32 results (statistics or sums) at the same offsets."""
    tl.store(A + offsets, a, mask=mask)
    tl.store(B + offsets, b, mask=mask)


@triton.jit
def plane_pivot(x_ptr, cmask):
    """The first element of each plane as fp32: the shift that keeps the statistics exact."""
    return tl.sum(tl.load(x_ptr, mask=cmask[None, :], other=0.0).to(tl.float32), axis=0)


@triton.jit
def load_rows(ptr, s_l, start, stop, cmask, BLOCK_L: tl.constexpr):
    """Rows ``[start, start + BLOCK_L)`` (clipped at ``stop``) of a (rows x channels) tile, as fp32."""
    rows = start + tl.arange(0, BLOCK_L)
    mask = (rows < stop)[:, None] & cmask[None, :]
    values = tl.load(ptr + rows.to(tl.int64)[:, None] * s_l, mask=mask, other=0.0).to(tl.float32)
    return values, mask


@triton.jit
def store_rows(ptr, s_l, start, values, mask, BLOCK_L: tl.constexpr):
    """Store a (rows x channels) fp32 tile at rows ``[start, start + BLOCK_L)`` in ``ptr``'s dtype."""
    rows = start + tl.arange(0, BLOCK_L)
    tl.store(ptr + rows.to(tl.int64)[:, None] * s_l, values.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def affine_coefficients(W, B, cols, cmask, rstd, HAS_W: tl.constexpr, HAS_B: tl.constexpr):
    """Per-channel ``scale = weight * rstd`` and ``offset = bias`` so ``z = (x - mean) * scale + offset``."""
    scale = rstd
    if HAS_W:
        scale = scale * tl.load(W + cols, mask=cmask, other=1.0).to(tl.float32)
    offset = tl.zeros_like(rstd)
    if HAS_B:
        offset = tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)
    return scale, offset


@triton.jit
def shifted_chunk_stats(x_ptr, s_l, pivot, start, stop, cmask, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr):
    """Mean of ``x - pivot`` and M2 (sum of squared deviations) over rows ``[start, stop)``.

    Each ``BLOCK_L`` tile is reduced exactly in registers, then merged into the running result with
    Chan's formula; the order is fixed, so the result is deterministic.
    """
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for tile_start in range(start, stop, BLOCK_L):
        x, mask = load_rows(x_ptr, s_l, tile_start, stop, cmask, BLOCK_L)
        x = tl.where(mask, x - pivot[None, :], 0.0)
        count_b = tl.cast(tl.minimum(stop - tile_start, BLOCK_L), tl.float32)
        count_a = tl.cast(tile_start - start, tl.float32)
        mean_b = tl.sum(x, axis=0) / count_b
        dev = tl.where(mask, x - mean_b[None, :], 0.0)
        m2_b = tl.sum(dev * dev, axis=0)
        total = count_a + count_b
        delta = mean_b - mean
        mean = mean + delta * (count_b / total)
        m2 = m2 + m2_b + delta * delta * (count_a * count_b / total)
    return mean, m2


@triton.jit
def write_output_tile(
    z,
    y_ptr,
    r_ptr,
    s_yl,
    s_rl,
    start,
    stop,
    cmask,
    mask,
    slope,
    HAS_R: tl.constexpr,
    ACT: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """Store ``act(z) + r`` (``z`` the affine-normalized tile) at rows ``[start, start + BLOCK_L)``."""
    y = apply_activation(z, slope, ACT)
    if HAS_R:
        r, _ = load_rows(r_ptr, s_rl, start, stop, cmask, BLOCK_L)
        y = y + r
    store_rows(y_ptr, s_yl, start, y, mask, BLOCK_L)


@triton.jit
def normalize_rows(
    x_ptr,
    y_ptr,
    r_ptr,
    s_xl,
    s_yl,
    s_rl,
    start,
    stop,
    cmask,
    pivot,
    mean_p,
    scale,
    offset,
    slope,
    HAS_R: tl.constexpr,
    ACT: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """Write ``act((x - pivot - mean_p) * scale + offset) + r`` for rows ``[start, stop)``, tile by tile.

    ``mean = pivot + mean_p``; subtracting the two parts separately keeps planes with a large mean exact.
    """
    for tile_start in range(start, stop, BLOCK_L):
        x, mask = load_rows(x_ptr, s_xl, tile_start, stop, cmask, BLOCK_L)
        z = ((x - pivot[None, :]) - mean_p[None, :]) * scale[None, :] + offset[None, :]
        write_output_tile(
            z, y_ptr, r_ptr, s_yl, s_rl, tile_start, stop, cmask, mask, slope, HAS_R, ACT, BLOCK_L
        )


@triton.jit
def instance_norm_fwd_plane_kernel(
    X,
    Y,
    W,
    B,
    R,
    Mean,
    Rstd,
    C,
    L,
    s_xn,
    s_xc,
    s_xl,
    s_yn,
    s_yc,
    s_yl,
    s_rn,
    s_rc,
    s_rl,
    eps,
    slope,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    HAS_R: tl.constexpr,
    ACT: tl.constexpr,
    ONE_TILE: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Whole-plane forward: one program normalizes ``BLOCK_C`` full planes of one sample."""
    n, cols, cmask, x_off = program_tile(C, s_xn, s_xc, BLOCK_C)
    x_ptr = X + x_off
    y_ptr = plane_pointer(Y, n, cols, s_yn, s_yc)
    r_ptr = plane_pointer(R, n, cols, s_rn, s_rc)
    pivot = plane_pivot(x_ptr, cmask)
    if ONE_TILE:
        x, mask = load_rows(x_ptr, s_xl, 0, L, cmask, BLOCK_L)
        x = tl.where(mask, x - pivot[None, :], 0.0)
        mean_s = tl.sum(x, axis=0) / L
        dev = tl.where(mask, x - mean_s[None, :], 0.0)
        rstd = tl.rsqrt(tl.sum(dev * dev, axis=0) / L + eps)
        scale, offset = affine_coefficients(W, B, cols, cmask, rstd, HAS_W, HAS_B)
        z = dev * scale[None, :] + offset[None, :]
        write_output_tile(z, y_ptr, r_ptr, s_yl, s_rl, 0, L, cmask, mask, slope, HAS_R, ACT, BLOCK_L)
    else:
        mean_s, m2 = shifted_chunk_stats(x_ptr, s_xl, pivot, 0, L, cmask, BLOCK_L, BLOCK_C)
        rstd = tl.rsqrt(m2 / L + eps)
        scale, offset = affine_coefficients(W, B, cols, cmask, rstd, HAS_W, HAS_B)
        normalize_rows(
            x_ptr,
            y_ptr,
            r_ptr,
            s_xl,
            s_yl,
            s_rl,
            0,
            L,
            cmask,
            pivot,
            mean_s,
            scale,
            offset,
            slope,
            HAS_R,
            ACT,
            BLOCK_L,
        )
    store_pair(Mean, Rstd, n * C + cols, mean_s + pivot, rstd, cmask)


@triton.jit
def instance_norm_fwd_split_stats_kernel(
    X,
    PartMean,
    PartM2,
    C,
    L,
    CHUNK,
    s_xn,
    s_xc,
    s_xl,
    BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Split forward, phase 1: (mean - pivot, M2) of rows ``[s * CHUNK, (s + 1) * CHUNK)`` of each plane."""
    n, cols, cmask, x_off = program_tile(C, s_xn, s_xc, BLOCK_C)
    split, num_splits, start, stop = program_chunk(CHUNK, L)
    x_ptr = X + x_off
    pivot = plane_pivot(x_ptr, cmask)
    mean_s, m2 = shifted_chunk_stats(x_ptr, s_xl, pivot, start, stop, cmask, BLOCK_L, BLOCK_C)
    store_pair(PartMean, PartM2, (n * num_splits + split) * C + cols, mean_s, m2, cmask)


@triton.jit
def instance_norm_fwd_split_norm_kernel(
    X,
    Y,
    W,
    B,
    R,
    Mean,
    Rstd,
    PartMean,
    PartM2,
    C,
    L,
    CHUNK,
    s_xn,
    s_xc,
    s_xl,
    s_yn,
    s_yc,
    s_yl,
    s_rn,
    s_rc,
    s_rl,
    eps,
    slope,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    HAS_R: tl.constexpr,
    ACT: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Split forward, phase 2: merge the plane's chunk statistics, then normalize this program's chunk.

    ``mean = Σ n_s mean_s / L`` and ``M2 = Σ M2_s + Σ n_s (mean_s - mean)²`` (Chan's formula for many
    parts) in a fixed order; program ``s == 0`` stores the plane's mean and rstd for backward.
    """
    n, cols, cmask, x_off = program_tile(C, s_xn, s_xc, BLOCK_C)
    split, num_splits, start, stop = program_chunk(CHUNK, L)
    x_ptr = X + x_off
    pivot = plane_pivot(x_ptr, cmask)

    parts, pmask, part = partial_offsets(n, C, cols, cmask, num_splits, BLOCK_S)
    part_mean = tl.load(PartMean + part, mask=pmask, other=0.0)
    part_m2 = tl.load(PartM2 + part, mask=pmask, other=0.0)
    counts = tl.where(parts < num_splits, tl.minimum(L - parts * CHUNK, CHUNK), 0).to(tl.float32)
    mean_s = tl.sum(part_mean * counts[:, None], axis=0) / L
    dev = tl.where(pmask, part_mean - mean_s[None, :], 0.0)
    m2 = tl.sum(part_m2, axis=0) + tl.sum(counts[:, None] * dev * dev, axis=0)
    rstd = tl.rsqrt(m2 / L + eps)
    if split == 0:
        store_pair(Mean, Rstd, n * C + cols, mean_s + pivot, rstd, cmask)

    scale, offset = affine_coefficients(W, B, cols, cmask, rstd, HAS_W, HAS_B)
    y_ptr = plane_pointer(Y, n, cols, s_yn, s_yc)
    r_ptr = plane_pointer(R, n, cols, s_rn, s_rc)
    normalize_rows(
        x_ptr,
        y_ptr,
        r_ptr,
        s_xl,
        s_yl,
        s_rl,
        start,
        stop,
        cmask,
        pivot,
        mean_s,
        scale,
        offset,
        slope,
        HAS_R,
        ACT,
        BLOCK_L,
    )
