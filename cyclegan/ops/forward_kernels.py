"""The Triton forward kernel of InstanceNorm with fused affine, activation and residual add.

``y = act(weight * (x - mean) * rstd + bias) + residual`` per (sample, channel) plane; the pure-PyTorch
statement of the same computation is ``cyclegan.ops.reference.instance_norm_ref``. Statistics are fp32 and
numerically stable: values are taken relative to the plane's first element (the pivot), each tile's mean
and squared deviations are computed in registers, and tiles are merged with Chan's formula in a fixed order
(no sum of squares, no atomics), so the result is deterministic.

One kernel, launched per ``STEP`` of the launch plan (``LaunchPlan.steps``): ``"tile"`` and ``"stream"``
normalize whole planes (one program per sample and channel block); on the split path several programs share
each plane, ``"partials"`` writing each chunk's (mean - pivot, M2) and ``"merge"`` merging them before
normalizing its chunk.
"""

import triton
import triton.language as tl

from cyclegan.ops import kernel_helpers as kh


@triton.jit
def plane_pivot(x_ptr, cmask):
    """The first element of each plane as fp32: the shift that keeps the statistics exact."""
    return tl.sum(tl.load(x_ptr, mask=cmask[None, :], other=0.0).to(tl.float32), axis=0)


@triton.jit
def shifted_chunk_stats(x_ptr, s_l, pivot, start, stop, cmask, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr):
    """Mean of ``x - pivot`` and M2 (sum of squared deviations) over rows ``[start, stop)``: each
    ``BLOCK_L`` tile is reduced exactly in registers, then merged into the running result (Chan's formula)."""
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for tile_start in range(start, stop, BLOCK_L):
        rows, mask = kh.row_tile(tile_start, stop, cmask, BLOCK_L)
        x = tl.where(mask, kh.load_tile(x_ptr, rows, s_l, mask) - pivot[None, :], 0.0)
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
def merge_chunk_stats(PartMean, PartM2, n, C, cols, cmask, L, CHUNK, BLOCK_S: tl.constexpr):
    """Mean of ``x - pivot`` and M2 of whole planes from their chunks' partials, in a fixed order:
    ``mean = Σ n_s mean_s / L``, ``M2 = Σ M2_s + Σ n_s (mean_s - mean)²`` (Chan's formula for many parts)."""
    parts, pmask, offsets = kh.partial_offsets(n, C, cols, cmask, BLOCK_S)
    part_mean = tl.load(PartMean + offsets, mask=pmask, other=0.0)
    part_m2 = tl.load(PartM2 + offsets, mask=pmask, other=0.0)
    counts = tl.where(parts < tl.num_programs(1), tl.minimum(L - parts * CHUNK, CHUNK), 0).to(tl.float32)
    mean = tl.sum(part_mean * counts[:, None], axis=0) / L
    dev = tl.where(pmask, part_mean - mean[None, :], 0.0)
    return mean, tl.sum(part_m2, axis=0) + tl.sum(counts[:, None] * dev * dev, axis=0)


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
def store_output(y_ptr, r_ptr, rows, s_l, z, mask, slope, HAS_R: tl.constexpr, ACTIVATION: tl.constexpr):
    """Store ``act(z) + r`` for the tile ``rows`` (``z`` the affine-normalized tile)."""
    y = kh.activation_gate(z, z, slope, ACTIVATION)
    if HAS_R:
        y = y + kh.load_tile(r_ptr, rows, s_l, mask)
    kh.store_tile(y_ptr, rows, s_l, y, mask)


@triton.jit
def instance_norm_fwd_kernel(
    X, Y, W, B, R, Mean, Rstd, PartMean, PartM2,  # Y and R have X's strides
    C, L, CHUNK, s_n, s_c, s_l,  # CHUNK == L on the whole-plane path
    eps, slope,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_R: tl.constexpr, ACTIVATION: tl.constexpr,
    STEP: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """One ``STEP`` over this program's rows of ``BLOCK_C`` planes of one sample. Outside ``"partials"``,
    program ``(p, 0)`` stores the planes' mean and rstd for backward."""
    n, cols, cmask = kh.program_planes(C, BLOCK_C)
    x_ptr = kh.plane_pointer(X, n, cols, s_n, s_c)
    start, stop = kh.program_rows(CHUNK, L)
    pivot = plane_pivot(x_ptr, cmask)
    if STEP == "merge":
        mean_p, m2 = merge_chunk_stats(PartMean, PartM2, n, C, cols, cmask, L, CHUNK, BLOCK_S)
    elif STEP == "tile":
        rows, mask = kh.row_tile(0, L, cmask, BLOCK_L)
        x = tl.where(mask, kh.load_tile(x_ptr, rows, s_l, mask) - pivot[None, :], 0.0)
        mean_p = tl.sum(x, axis=0) / L
        dev = tl.where(mask, x - mean_p[None, :], 0.0)
        m2 = tl.sum(dev * dev, axis=0)
    else:
        mean_p, m2 = shifted_chunk_stats(x_ptr, s_l, pivot, start, stop, cmask, BLOCK_L, BLOCK_C)

    if STEP == "partials":
        kh.store_pair(PartMean, PartM2, kh.own_partial_offsets(n, C, cols), mean_p, m2, cmask)
    else:
        rstd = tl.rsqrt(m2 / L + eps)
        if tl.program_id(1) == 0:
            kh.store_pair(Mean, Rstd, n * C + cols, mean_p + pivot, rstd, cmask)
        scale, offset = affine_coefficients(W, B, cols, cmask, rstd, HAS_W, HAS_B)
        y_ptr = kh.plane_pointer(Y, n, cols, s_n, s_c)
        r_ptr = kh.plane_pointer(R, n, cols, s_n, s_c)
        if STEP == "tile":
            z = dev * scale[None, :] + offset[None, :]
            store_output(y_ptr, r_ptr, rows, s_l, z, mask, slope, HAS_R, ACTIVATION)
        else:
            # ``mean = pivot + mean_p``; subtracting the two parts separately keeps large-mean planes exact.
            for tile_start in range(start, stop, BLOCK_L):
                rows, mask = kh.row_tile(tile_start, stop, cmask, BLOCK_L)
                x = kh.load_tile(x_ptr, rows, s_l, mask)
                z = ((x - pivot[None, :]) - mean_p[None, :]) * scale[None, :] + offset[None, :]
                store_output(y_ptr, r_ptr, rows, s_l, z, mask, slope, HAS_R, ACTIVATION)
