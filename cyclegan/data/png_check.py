"""Find the damage in a PNG that would crash torchvision's decoder, before handing it the bytes.

torchvision (0.29) guards libpng's error jump only while the header is read: an error while the rows are
read (a CRC mismatch in IDAT, a corrupt deflate stream, an unknown row filter, or fewer rows than the
header declares) kills the process with a segmentation fault. `png_damage` finds exactly those faults in
Python, so that a damaged file is skipped like any other bad image. It inflates the image data once, to
the end of its deflate stream as libpng does, in bounded pieces that are checked and dropped.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
# Adam7 interlacing: (first column, first row, column step, row step) of each of the 7 passes.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_LAST_FILTER_TYPE = 4  # None, Sub, Up, Average, Paeth
_PIECE = 1 << 20  # bytes inflated at a time


class _Damage(ValueError):
    """What is wrong with the file, in words."""


def png_damage(data: bytes) -> str | None:
    """Why libpng would fail while reading this PNG's rows, or None when its image data is sound."""
    try:
        header, compressed = _header_and_image_data(data)
        _check_rows(header, compressed)
    except _Damage as damage:
        return str(damage)
    return None


def _header_and_image_data(data: bytes) -> tuple[bytes, list[memoryview]]:
    """IHDR's 13 bytes and the bodies of the first run of IDAT chunks (the ones libpng reads), CRC-checked."""
    if not data.startswith(PNG_SIGNATURE):
        raise _Damage("no PNG signature")
    view = memoryview(data)
    position, header, compressed = len(PNG_SIGNATURE), None, []
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        body_start, body_end = position + 8, position + 8 + length
        if body_end + 4 > len(data):
            raise _Damage(f"the file ends inside its {kind.decode('latin-1')} chunk")
        body = view[body_start:body_end]
        if kind == b"IHDR":
            header = bytes(body)
        elif kind == b"IDAT":
            (stored_crc,) = struct.unpack_from(">I", data, body_end)
            if zlib.crc32(body, zlib.crc32(kind)) != stored_crc:
                raise _Damage(f"CRC mismatch in IDAT chunk {len(compressed) + 1}")
            compressed.append(body)
        elif compressed:  # the first chunk after the image data: libpng reads no further
            break
        position = body_end + 4
    if header is None or len(header) != 13:
        raise _Damage("no valid IHDR chunk")
    if not compressed:
        raise _Damage("no image data (IDAT chunk)")
    return header, compressed


def _row_layout(header: bytes) -> list[tuple[int, int, int]]:
    """(offset of the pass's first row, bytes per row including its filter byte, rows) of each pass."""
    width, height, depth, colour, interlace = struct.unpack(">IIBB2xB", header)
    if colour not in _SAMPLES:
        raise _Damage(f"unknown colour type {colour}")
    bits_per_pixel = depth * _SAMPLES[colour]
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    layout, offset = [], 0
    for column, row, column_step, row_step in passes:
        columns = max(0, -(-(width - column) // column_step))
        rows = max(0, -(-(height - row) // row_step))
        if columns and rows:
            stride = 1 + (columns * bits_per_pixel + 7) // 8
            layout.append((offset, stride, rows))
            offset += stride * rows
    return layout


def _inflated(compressed: list[memoryview]) -> Iterator[bytes]:
    """The image data inflated piece by piece to the end of its deflate stream, as libpng reads it."""
    inflater = zlib.decompressobj()
    try:
        for body in [*compressed, b""]:  # the empty round drains output the inflater still holds
            pending: bytes | memoryview = body
            while not inflater.eof:
                piece = inflater.decompress(pending, _PIECE)
                pending = inflater.unconsumed_tail
                if not piece and not pending:
                    break
                yield piece
    except zlib.error as error:
        raise _Damage(f"its compressed image data is corrupt ({error})") from None
    if not inflater.eof:
        raise _Damage("its compressed image data stops before the end of its deflate stream")


def _check_rows(header: bytes, compressed: list[memoryview]) -> None:
    """Every row present in full, each starting with a known filter type, and the stream complete."""
    layout = _row_layout(header)
    wanted = sum(stride * rows for _, stride, rows in layout)
    produced = 0
    for piece in _inflated(compressed):
        if produced < wanted:
            rows = np.frombuffer(piece, dtype=np.uint8)[: wanted - produced]
            _check_filter_types(rows, produced, layout)
        produced += len(piece)
    if produced < wanted:
        width, height = struct.unpack_from(">II", header)
        raise _Damage(
            f"its image data ends after {produced} of the {wanted} bytes a {width}x{height} image needs"
        )


def _check_filter_types(piece: np.ndarray, start: int, layout: list[tuple[int, int, int]]) -> None:
    """The filter bytes of the rows that begin inside ``piece`` (which starts at byte ``start``)."""
    end = start + len(piece)
    for offset, stride, rows in layout:
        first = max(0, -(-(start - offset) // stride))
        last = min(rows, -(-(end - offset) // stride))
        if first >= last:
            continue
        filters = piece[offset + stride * np.arange(first, last) - start]
        unknown = np.flatnonzero(filters > _LAST_FILTER_TYPE)
        if unknown.size:
            row = first + int(unknown[0])
            raise _Damage(f"row {row} has an unknown filter type {int(filters[unknown[0]])}")
