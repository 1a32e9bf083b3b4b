"""Map-style datasets over two image domains. Files are listed once (by the datamodule) and each item is
read and decoded lazily inside the DataLoader worker that asks for it; nothing decoded is kept.

Bad files (empty, truncated, not an image, decompression bomb) are skipped in training and validation:
another file is used in their place and the skipped path travels back in the batch under `skipped`, so
the main process can count them (workers cannot change the parent's attributes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset

from cyclegan.data.decode import BadImageError, decode_image_bytes
from cyclegan.data.files import DatasetRoot, PathTable
from cyclegan.data.sampling import SharedEpoch, sample_generator
from cyclegan.data.transforms import EvalTransform, TrainTransform

log = logging.getLogger(__name__)

# Consecutive bad files tolerated for one sample before giving up on the domain.
MAX_CONSECUTIVE_BAD = 50


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


class DatasetError(RuntimeError):
    """The images cannot be trained on as configured: a folder of unreadable files, or images of
    different sizes in one batch."""


def _skip(error: BadImageError, skipped: list[str]) -> None:
    log.warning("skipping %s", error)
    skipped.append(error.path)


def _give_up(folder: ImageFolder, error: BadImageError) -> DatasetError:
    return DatasetError(
        f"{MAX_CONSECUTIVE_BAD} unreadable images in a row in {folder.root.display(folder.root.path)}/"
        f"{folder.folder} (last: {error}); the folder looks broken"
    )


def _load_or_replace(
    folder: ImageFolder,
    index: int,
    skipped: list[str],
    *,
    skip_bad_images: bool,
    replacement: Callable[[int], int],
) -> tuple[torch.Tensor, str]:
    """Load file `index`; a bad file is recorded in `skipped` and file `replacement(index)` tried in its
    place (or the error is raised, when not skipping)."""
    for _ in range(MAX_CONSECUTIVE_BAD):
        try:
            return folder.load(index), folder.path(index)
        except BadImageError as error:
            if not skip_bad_images:
                raise
            _skip(error, skipped)
            last_error = error
            index = replacement(index)
    raise _give_up(folder, last_error)


def _pair_item(
    image_a: torch.Tensor, image_b: torch.Tensor, path_a: str, path_b: str, skipped: list[str]
) -> dict[str, Any]:
    return {"A": image_a, "B": image_b, "A_paths": path_a, "B_paths": path_b, "skipped": skipped}


class _DomainPairDataset(Dataset):
    """Items pairing an A file with a B file; length max(|A|, |B|)."""

    def __init__(
        self, domain_a: ImageFolder, domain_b: ImageFolder, transform: Any, skip_bad_images: bool
    ) -> None:
        self.domain_a = domain_a
        self.domain_b = domain_b
        self.transform = transform
        self.skip_bad_images = skip_bad_images

    def __len__(self) -> int:
        return max(len(self.domain_a), len(self.domain_b))


class UnpairedTrainDataset(_DomainPairDataset):
    """Training pairs as the reference makes them: A[i mod |A|] with a random B (or B[i mod |B|] when serial).

    Length is max(|A|, |B|). All random draws come from a generator seeded by (seed, epoch, rank, index).
    """

    def __init__(
        self,
        domain_a: ImageFolder,
        domain_b: ImageFolder,
        transform: TrainTransform,
        *,
        serial_batches: bool,
        seed: int,
        epoch: SharedEpoch,
        rank: int = 0,
        skip_bad_images: bool = True,
    ) -> None:
        super().__init__(domain_a, domain_b, transform, skip_bad_images)
        self.serial_batches = serial_batches
        self.seed = seed
        self.epoch = epoch
        self.rank = rank

    def __getitem__(self, index: int) -> dict[str, Any]:
        generator = sample_generator(self.seed, self.epoch.value, self.rank, index)
        if self.serial_batches:
            b_index = index % len(self.domain_b)
        else:
            b_index = int(torch.randint(0, len(self.domain_b), (1,), generator=generator))
        skipped: list[str] = []
        image_a, path_a = self._load(self.domain_a, index % len(self.domain_a), generator, skipped)
        image_b, path_b = self._load(self.domain_b, b_index, generator, skipped)
        image_a, image_b = self.transform(image_a, generator), self.transform(image_b, generator)
        return _pair_item(image_a, image_b, path_a, path_b, skipped)

    def _load(
        self, folder: ImageFolder, index: int, generator: torch.Generator, skipped: list[str]
    ) -> tuple[torch.Tensor, str]:
        """Load file `index`; a bad file is replaced by a random one (or raised, when not skipping)."""

        def random_file(_index: int) -> int:
            return int(torch.randint(0, len(folder), (1,), generator=generator))

        return _load_or_replace(
            folder, index, skipped, skip_bad_images=self.skip_bad_images, replacement=random_file
        )


class PairedEvalDataset(_DomainPairDataset):
    """Validation/test pairs without randomness: A[i mod |A|] with B[i mod |B|], length max(|A|, |B|).

    With skip_bad_images a bad file is replaced by the next file of its domain (validation); without it
    the error names the file (test, where every output must belong to its own input).
    """

    def __init__(
        self,
        domain_a: ImageFolder,
        domain_b: ImageFolder,
        transform: EvalTransform,
        *,
        skip_bad_images: bool,
    ) -> None:
        super().__init__(domain_a, domain_b, transform, skip_bad_images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped: list[str] = []
        image_a, path_a = self._load(self.domain_a, index % len(self.domain_a), skipped)
        image_b, path_b = self._load(self.domain_b, index % len(self.domain_b), skipped)
        return _pair_item(self.transform(image_a), self.transform(image_b), path_a, path_b, skipped)

    def _load(self, folder: ImageFolder, index: int, skipped: list[str]) -> tuple[torch.Tensor, str]:
        """Load file `index`; a bad file is replaced by the next one (or raised, when not skipping)."""
        return _load_or_replace(
            folder,
            index,
            skipped,
            skip_bad_images=self.skip_bad_images,
            replacement=lambda i: (i + 1) % len(folder),
        )


class SingleDomainDataset(Dataset):
    """Prediction inputs: every file of one folder once, in sorted order, under the key `A`."""

    def __init__(self, domain: ImageFolder, transform: EvalTransform) -> None:
        self.domain = domain
        self.transform = transform

    def __len__(self) -> int:
        return len(self.domain)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"A": self.transform(self.domain.load(index)), "A_paths": self.domain.path(index)}


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack image tensors, gather paths into lists and concatenate the skipped paths of all samples."""
    batch: dict[str, Any] = {}
    for key, first in samples[0].items():
        values = [sample[key] for sample in samples]
        if key == "skipped":
            batch[key] = [path for paths in values for path in paths]
        elif isinstance(first, torch.Tensor):
            shapes = {tuple(value.shape) for value in values}
            if len(shapes) > 1:
                raise DatasetError(
                    f"images in one batch have different sizes {sorted(shapes)} (key {key!r}); with "
                    "preprocess/test_preprocess 'none' or 'scale_width' use batch_size=1 or a cropping mode"
                )
            batch[key] = torch.stack(values)
        else:
            batch[key] = values
    return batch
