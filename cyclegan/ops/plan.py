"""Launch plan for the InstanceNorm kernels: tile shape, warps, and whole-plane vs split path.

A heuristic rather than autotuning, so the first training step pays no tuning time and the choice is
reproducible: it depends only on (N, C, L, layout, dtype size, SM count, forward/backward). Tests force
either path with ``path="plane"`` / ``path="split"`` and a small ``chunk``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import triton

PATHS = ("auto", "plane", "split")

# Elements per register tile when a whole plane (block) is kept in registers: forward holds x, backward
# holds x and g, so its budget is half.
ONE_TILE_ELEMENTS = {False: 8192, True: 4096}
# Elements per tile when a plane is streamed in a loop.
STREAM_TILE_ELEMENTS = 2048
# More split programs per plane than this only add merge work.
MAX_SPLITS = 64


@dataclass(frozen=True)
class LaunchPlan:
    """How to launch one InstanceNorm pass: ``splits > 1`` means the split (two-phase) path."""

    block_l: int
    block_c: int
    num_warps: int
    one_tile: bool
    splits: int
    chunk: int

    @property
    def is_split(self) -> bool:
        return self.splits > 1

    @property
    def steps(self) -> tuple[str, ...]:
        """The kernel launches of one pass, by the kernels' ``STEP``: ``"tile"`` (the whole plane in one
        register tile), ``"stream"`` (the whole plane streamed: statistics, then output), or on the split path
        ``"partials"`` (each chunk's partial results) then ``"merge"`` (merge them, write each chunk)."""
        if self.is_split:
            return ("partials", "merge")
        return ("tile",) if self.one_tile else ("stream",)


def _floor_pow2(value: int) -> int:
    return 1 << (max(int(value), 1).bit_length() - 1)


def _channel_block(
    batch: int, channels: int, length: int, channels_last: bool, elem_size: int, sm_count: int
) -> int:
    """Channels per program: several small planes per program (NCHW); for channels_last 128 contiguous
    bytes per row, narrowed (down to one 32-byte sector) when even ``MAX_SPLITS`` programs per channel
    block could not fill the GPU."""
    if not channels_last:
        return min(triton.next_power_of_2(channels), max(1, 1024 // triton.next_power_of_2(length)))
    block_c = min(triton.next_power_of_2(channels), 128 // elem_size)
    while block_c > 32 // elem_size and batch * triton.cdiv(channels, block_c) * MAX_SPLITS < 4 * sm_count:
        block_c //= 2
    return block_c


def _warps(tile_elements: int) -> int:
    return max(1, min(8, tile_elements // 512))


@functools.lru_cache(maxsize=1024)  # a pure function of integers, asked on every forward and backward
def plan_launch(
    batch: int,
    channels: int,
    length: int,
    *,
    channels_last: bool,
    elem_size: int,
    sm_count: int,
    backward: bool,
    path: str = "auto",
    chunk: int = 0,
) -> LaunchPlan:
    """Choose tile sizes and the path for planes of ``length`` elements.

    ``path="auto"`` splits planes only when there are too few (sample, channel-block) programs to fill
    ``sm_count`` SMs twice and each plane is long enough to stream. ``path="plane"`` forces one program
    per plane block (``chunk > 0`` caps its tile rows, forcing the streamed loop when ``chunk < length``);
    ``path="split"`` forces several programs per plane, each covering ``chunk`` rows (auto when 0).
    """
    if path not in PATHS:
        raise ValueError(f"instance_norm path must be one of {PATHS}, got {path!r}")
    block_c = _channel_block(batch, channels, length, channels_last, elem_size, sm_count)
    one_tile_rows = ONE_TILE_ELEMENTS[backward] // block_c
    stream_rows = max(1, STREAM_TILE_ELEMENTS // block_c)
    programs = batch * triton.cdiv(channels, block_c)

    if path == "plane" or (path == "auto" and (length <= one_tile_rows or programs >= 2 * sm_count)):
        if chunk > 0 and chunk < length:
            block_l = _floor_pow2(chunk)
            return LaunchPlan(block_l, block_c, _warps(block_l * block_c), False, 1, length)
        if length <= one_tile_rows:
            block_l = triton.next_power_of_2(length)
            return LaunchPlan(block_l, block_c, _warps(block_l * block_c), True, 1, length)
        return LaunchPlan(stream_rows, block_c, _warps(stream_rows * block_c), False, 1, length)

    if chunk <= 0:
        wanted = max(2, triton.cdiv(4 * sm_count, programs))
        splits = min(wanted, MAX_SPLITS, max(2, triton.cdiv(length, stream_rows)))
        chunk = triton.cdiv(triton.cdiv(length, splits), stream_rows) * stream_rows
        if triton.cdiv(length, chunk) < 2:
            chunk = triton.cdiv(length, 2)
    block_l = min(stream_rows, _floor_pow2(chunk))
    splits = triton.cdiv(length, chunk)
    if splits < 2:
        return LaunchPlan(block_l, block_c, _warps(block_l * block_c), False, 1, length)
    return LaunchPlan(block_l, block_c, _warps(block_l * block_c), False, splits, chunk)
