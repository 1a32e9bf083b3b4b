"""The ``@triton.jit`` helpers the forward and backward InstanceNorm kernels share.

Every kernel sees a tensor as ``(N, C, L)`` through explicit strides ``(s_n, s_c, s_l)``: NCHW has
``s_l == 1`` and channels_last has ``s_c == 1, s_l == C``. A program owns ``BLOCK_C`` planes (channels) of
one sample (grid axis 0) and, on the split path, one chunk of their rows (grid axis 1); it walks its rows in
tiles of ``BLOCK_L`` rows x ``BLOCK_C`` channels, so loads are contiguous along whichever axis is
contiguous in memory. The activation is named as in the public op: None, "relu" or "leaky_relu".
"""

import triton
import triton.language as tl


@triton.jit
def activation_gate(v, z, slope, ACTIVATION: tl.constexpr):
    """``v`` where ``z > 0``; elsewhere 0 for ReLU, ``v * slope`` for LeakyReLU; ``v`` for None.

    ``activation_gate(z, z, ...)`` is the activation itself and ``activation_gate(g, z, ...)`` its
    backward ``g * act'(z)``: one definition of the activation for both directions.
    """
    if ACTIVATION == "relu":
        v = tl.where(z > 0, v, 0.0)
    elif ACTIVATION == "leaky_relu":
        v = tl.where(z > 0, v, v * slope)
    return v


@triton.jit
def program_planes(C, BLOCK_C: tl.constexpr):
    """This program's sample index (int64), its channel indices and their mask (grid axis 0)."""
    pid = tl.program_id(0)
    num_cblocks = tl.cdiv(C, BLOCK_C)
    n = (pid // num_cblocks).to(tl.int64)
    cols = (pid % num_cblocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    return n, cols, cols < C


@triton.jit
def plane_pointer(P, n, cols, s_n, s_c):
    """Pointer to row 0 of planes ``cols`` of sample ``n`` (a 1 x channels block)."""
    return P + n * s_n + cols.to(tl.int64)[None, :] * s_c


@triton.jit
def program_rows(CHUNK, L):
    """Rows ``[start, stop)`` of this program's chunk (grid axis 1); the whole plane when ``CHUNK == L``."""
    start = tl.program_id(1) * CHUNK
    return start, tl.minimum(start + CHUNK, L)


@triton.jit
def row_tile(start, stop, cmask, BLOCK_L: tl.constexpr):
    """Row indices (int64, as a column) of the tile starting at ``start`` and its mask (rows < stop)."""
    rows = start + tl.arange(0, BLOCK_L)
    mask = (rows < stop)[:, None] & cmask[None, :]
    return rows.to(tl.int64)[:, None], mask


@triton.jit
def load_tile(ptr, rows, s_l, mask):
    """A (rows x channels) tile as fp32 (0 where masked)."""
    return tl.load(ptr + rows * s_l, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def store_tile(ptr, rows, s_l, values, mask):
    """Store an fp32 (rows x channels) tile in ``ptr``'s dtype."""
    tl.store(ptr + rows * s_l, values.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def partial_offsets(n, C, cols, cmask, BLOCK_S: tl.constexpr):
    """Split path: chunk indices, mask and offsets of every chunk's partial results for planes ``cols``
    in an ``(N, splits, C)`` buffer."""
    num_splits = tl.num_programs(1)
    parts = tl.arange(0, BLOCK_S)
    pmask = (parts < num_splits)[:, None] & cmask[None, :]
    offsets = (n * num_splits + parts[:, None]) * C + cols[None, :]
    return parts, pmask, offsets


@triton.jit
def own_partial_offsets(n, C, cols):
    """Split path: where this program stores its chunk's partial results in the ``(N, splits, C)`` buffer."""
    return (n * tl.num_programs(1) + tl.program_id(1)) * C + cols


@triton.jit
def store_pair(A, B, offsets, a, b, mask):
    """Store two per-plane fp32 results (statistics or sums) at the same offsets."""
    tl.store(A + offsets, a, mask=mask)
    tl.store(B + offsets, b, mask=mask)
