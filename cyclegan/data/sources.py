"""What dataset items are read from: one domain's image folder, the reference's aligned A|B files, or two
folders of paired files. Each source lists its files once and reads item i on demand (in the DataLoader
worker that asks for it), raising BadImageError naming the file when item i cannot be used."""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torchvision.transforms.v2.functional import rgb_to_grayscale

from cyclegan.data.decode import BadImageError, decode_image_bytes
from cyclegan.data.files import DatasetRoot, PathTable

log = logging.getLogger(__name__)

# Unmatched files named in the warning (the count covers all of them).
_UNMATCHED_SHOWN = 10


class ImageFolder:
    """The image files of one domain split: reads and decodes file i on demand."""

    def __init__(
        self, root: DatasetRoot, folder: str, paths: PathTable, channels: int, max_pixels: int
    ) -> None:
        self.root = root
        self.folder = folder
        self.paths = paths
        self.channels = channels
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def location(self) -> str:
        """The folder as users see it (for messages)."""
        return f"{self.root.display(self.root.path)}/{self.folder}"

    def path(self, index: int) -> str:
        return self.root.display(self.paths[index])

    def load(self, index: int) -> torch.Tensor:
        """uint8 (channels, H, W); raises BadImageError naming the file when it cannot be used."""
        path = self.paths[index]
        try:
            data = self.root.fs.cat_file(path)
        except OSError as error:
            raise BadImageError(self.root.display(path), f"cannot read the file ({error})") from error
        return decode_image_bytes(data, self.root.display(path), self.channels, self.max_pixels)

    def read(self, index: int) -> tuple[torch.Tensor, str]:
        """File ``index`` decoded, and its path."""
        return self.load(index), self.path(index)


class Pair(NamedTuple):
    """One training example of paired data: the A (source) and B (target) images, uint8, and their files."""

    image_a: torch.Tensor
    image_b: torch.Tensor
    path_a: str
    path_b: str


def _with_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    return rgb_to_grayscale(image) if image.shape[0] != channels else image


class AlignedPairs:
    """The reference's aligned format: each image of ``images`` holds A on its left half and B on its right
    half (split at ``width // 2``; an odd width's last column is dropped so both halves are equal).
    ``swap`` (direction BtoA) makes the right half A. ``channels`` are A's and B's channel counts; the
    folder decodes with 3 channels when either has 3."""

    def __init__(self, images: ImageFolder, channels: tuple[int, int], *, swap: bool) -> None:
        self.images = images
        self.channels = channels
        self.swap = swap

    def __len__(self) -> int:
        return len(self.images)

    @property
    def location(self) -> str:
        return self.images.location

    def read(self, index: int) -> Pair:
        """File ``index`` split into its A and B halves; BadImageError when it cannot be used."""
        image, path = self.images.read(index)
        half = image.shape[-1] // 2
        if half < 1:
            raise BadImageError(path, "is 1 pixel wide; an aligned image holds A and B side by side")
        left, right = image[..., :half], image[..., half : 2 * half]
        image_a, image_b = (right, left) if self.swap else (left, right)
        return Pair(
            _with_channels(image_a.contiguous(), self.channels[0]),
            _with_channels(image_b.contiguous(), self.channels[1]),
            path,
            path,
        )


class FolderPairs:
    """Paired folders: file i of ``folder_a`` with file i of ``folder_b`` (listings matched by
    `match_pairs`)."""

    def __init__(self, folder_a: ImageFolder, folder_b: ImageFolder) -> None:
        if len(folder_a) != len(folder_b):
            raise ValueError(f"paired folders need matched listings, got {len(folder_a)} and {len(folder_b)}")
        self.folder_a = folder_a
        self.folder_b = folder_b

    def __len__(self) -> int:
        return len(self.folder_a)

    @property
    def location(self) -> str:
        return f"{self.folder_a.location} and {self.folder_b.folder}"

    def read(self, index: int) -> Pair:
        image_a, path_a = self.folder_a.read(index)
        image_b, path_b = self.folder_b.read(index)
        return Pair(image_a, image_b, path_a, path_b)


def _pair_key(relative: str) -> str:
    """A file's relative path without its extension: ``x.png`` in one folder pairs with ``x.jpg`` too."""
    stem, dot, _ = relative.rpartition(".")
    return stem if dot else relative


def match_pairs(
    root: DatasetRoot, folder_a: str, folder_b: str, max_count: int | None = None
) -> tuple[PathTable, PathTable]:
    """The files of ROOT/folder_a and ROOT/folder_b that pair up by relative path (extension aside), in
    sorted order, at most ``max_count`` pairs. Files without a partner, or whose name is ambiguous (x.png
    and x.jpg in one folder), are listed in a warning and left out; no pair at all is an error."""
    listings = {}
    for folder in (folder_a, folder_b):
        prefix = f"{root.path}/{folder}/"
        grouped: dict[str, list[str]] = {}
        for path in root.list_images(folder):
            grouped.setdefault(_pair_key(path[len(prefix) :]), []).append(path)
        listings[folder] = grouped
    files_a, files_b = listings[folder_a], listings[folder_b]
    shared = files_a.keys() & files_b.keys()
    paired = sorted(key for key in shared if len(files_a[key]) == len(files_b[key]) == 1)
    unmatched = sorted(
        root.display(path)
        for files in (files_a, files_b)
        for key, paths in files.items()
        if key not in paired
        for path in paths
    )
    if not paired:
        raise ValueError(
            f"no image of {root.display(f'{root.path}/{folder_a}')} has a partner of the same relative path "
            f"(extension aside) in {root.display(f'{root.path}/{folder_b}')}; paired folders hold "
            f"{folder_a}/x.png with {folder_b}/x.png"
        )
    if unmatched:
        more = ", ..." if len(unmatched) > _UNMATCHED_SHOWN else ""
        log.warning(
            "skipping %d file(s) of %s and %s without a partner of the same relative path (extension aside) "
            "in the other folder, or with two: %s%s",
            len(unmatched),
            folder_a,
            folder_b,
            ", ".join(unmatched[:_UNMATCHED_SHOWN]),
            more,
        )
    paired = paired[:max_count] if max_count is not None else paired
    return PathTable(files_a[key][0] for key in paired), PathTable(files_b[key][0] for key in paired)
