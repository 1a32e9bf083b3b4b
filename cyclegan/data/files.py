"""Finding image files under a dataset root, local or any fsspec URL, and holding the lists compactly.

Only regular files are images: a FIFO, socket, device or broken link named like an image would hang or
fail the reader, so it is skipped and named. Local folder symlinks are followed, each real folder once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)

_IMAGES = f"images ({', '.join(IMAGE_EXTENSIONS)}; searched recursively)"
EXPECTED_LAYOUT = (
    "expected ROOT/trainA, ROOT/trainB, ROOT/testA, ROOT/testB (and optionally ROOT/valA, ROOT/valB), "
    f"each holding {_IMAGES}"
)
PAIRED_LAYOUT = (
    "expected the aligned layout, ROOT/train and ROOT/test (ROOT/val optional) holding images with A and "
    "B side by side, or paired folders, ROOT/trainA with ROOT/trainB (testA/testB, valA/valB optional) "
    f"holding files of the same relative names; {_IMAGES}"
)


class PathTable(Sequence[str]):
    """An immutable list of strings kept in one bytes blob plus an offset array.

    A Python list of N strings is N objects whose reference counts DataLoader workers touch, which copies
    the pages of forked workers one by one; two numpy buffers stay shared, so memory does not grow with
    the number of workers or files. Names that are not valid UTF-8 (kept by Python as surrogate escapes,
    as os.fsdecode does) round-trip unchanged.
    """

    def __init__(self, items: Iterable[str]) -> None:
        encoded = [item.encode("utf-8", "surrogateescape") for item in items]
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(item) for item in encoded], out=self._offsets[1:])

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} paths")
        index %= len(self)
        start, end = self._offsets[index], self._offsets[index + 1]
        return self._blob[start:end].tobytes().decode("utf-8", "surrogateescape")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


class ImageListing(NamedTuple):
    """Image files found (sorted) and entries named like images that are not regular files (skipped)."""

    images: list[str]
    not_regular: list[str]


def is_image_name(name: str) -> bool:
    """Whether the name ends in one of IMAGE_EXTENSIONS, in any letter case."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def find_local_images(folder: str | os.PathLike[str]) -> ImageListing:
    """Image files below a local folder, recursively: regular files only, folder symlinks followed, each
    real folder listed once (so a link loop or two links to one folder give no repeats)."""
    images: list[str] = []
    not_regular: list[str] = []
    seen: set[tuple[int, int]] = set()
    pending = [os.fspath(folder)]
    while pending:  # depth first, in name order, so that the first route to a folder is always the same
        directory = pending.pop()
        status = os.stat(directory)
        if (status.st_dev, status.st_ino) in seen:
            continue
        seen.add((status.st_dev, status.st_ino))
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
        subfolders = []
        for entry in entries:
            if entry.is_dir():
                subfolders.append(entry.path)
            elif is_image_name(entry.name):
                (images if entry.is_file() else not_regular).append(entry.path)
        pending.extend(reversed(subfolders))
    return ImageListing(sorted(images), sorted(not_regular))


class DatasetRoot:
    """A dataset root folder on some fsspec filesystem (a plain path means the local disk); ``layout``
    describes the folders expected in it, for error messages."""

    def __init__(self, root: str, layout: str = EXPECTED_LAYOUT) -> None:
        self.url = str(root)
        self.layout = layout
        self.fs, self.path = fsspec.core.url_to_fs(self.url)
        self.path = self.path.rstrip("/") or "/"
        if not self.fs.exists(self.path):
            raise FileNotFoundError(f"dataset root {self.url!r} does not exist; {layout}")
        if not self.fs.isdir(self.path):
            raise NotADirectoryError(f"dataset root {self.url!r} is a file, not a folder; {layout}")

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def has_folder(self, name: str) -> bool:
        return self.fs.isdir(f"{self.path}/{name}")

    def display(self, path: str) -> str:
        """The path as users see it: a plain path for local files, a full URL otherwise."""
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def list_images(self, folder: str, max_count: int | None = None) -> PathTable:
        """Image files below ROOT/folder (recursive, extension case-insensitive), sorted, at most max_count.

        Raises a clear error when the folder is missing, is a file, or holds no image.
        """
        location = f"{self.path}/{folder}"
        shown = self.display(location)
        if not self.fs.exists(location):
            raise FileNotFoundError(f"split folder {shown!r} does not exist; {self.layout}")
        if not self.fs.isdir(location):
            raise NotADirectoryError(f"split folder {shown!r} is a file, not a folder; {self.layout}")
        found, not_regular = self._find_images(location)
        if not_regular:
            log.warning(
                "skipping %d entries of %s named like images that are not regular files (FIFOs, sockets, "
                "devices, broken links): %s",
                len(not_regular),
                shown,
                ", ".join(self.display(path) for path in not_regular[:5]) + ", ..." * (len(not_regular) > 5),
            )
        if not found:
            raise ValueError(f"split folder {shown!r} holds no image file; {self.layout}")
        if max_count is not None:
            found = found[: int(max_count)]
        return PathTable(found)

    def _find_images(self, location: str) -> ImageListing:
        if self.is_local:
            return find_local_images(location)
        entries = self.fs.find(location, withdirs=False, detail=True)
        named = [(path, info) for path, info in entries.items() if is_image_name(path)]
        return ImageListing(
            sorted(path for path, info in named if info.get("type") == "file"),
            sorted(path for path, info in named if info.get("type") != "file"),
        )
