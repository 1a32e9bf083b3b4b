"""Map-style datasets over two image domains, unpaired (CycleGAN) or paired (pix2pix). Files are listed
once (by the datamodule, into the sources of `cyclegan.data.sources`) and each item is read and decoded
lazily inside the DataLoader worker that asks for it; nothing decoded is kept.

Bad files (empty, truncated, not an image, decompression bomb) are skipped in training and validation:
another file is used in their place and the skipped path travels back in the batch under `skipped`, so
the main process can count them (workers cannot change the parent's attributes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import torch
from torch.utils.data import Dataset

from cyclegan.data.decode import BadImageError
from cyclegan.data.sampling import SharedEpoch, sample_generator
from cyclegan.data.sources import ImageFolder, Pair
from cyclegan.data.transforms import EvalTransform, TrainTransform

log = logging.getLogger(__name__)

# Consecutive bad files tolerated for one sample before giving up on the domain.
MAX_CONSECUTIVE_BAD = 50


class DatasetError(RuntimeError):
    """The images cannot be trained on as configured: a folder of unreadable files, or images of
    different sizes in one batch."""


def _skip(error: BadImageError, skipped: list[str]) -> None:
    log.warning("skipping %s", error)
    skipped.append(error.path)


Item = TypeVar("Item", covariant=True)


class Source(Protocol[Item]):
    """What the datasets read from (`cyclegan.data.sources`): items by index, and where they are."""

    location: str

    def __len__(self) -> int: ...

    def read(self, index: int) -> Item: ...


def _give_up(source: Source, error: BadImageError) -> DatasetError:
    return DatasetError(
        f"{MAX_CONSECUTIVE_BAD} unreadable images in a row in {source.location} (last: {error}); "
        "the folder looks broken"
    )


def _read_or_replace(
    source: Source[Item],
    index: int,
    skipped: list[str],
    *,
    skip_bad_images: bool,
    replacement: Callable[[int], int],
) -> Item:
    """Read item `index`; a bad file is recorded in `skipped` and item `replacement(index)` tried in its
    place (or the error is raised, when not skipping)."""
    for _ in range(MAX_CONSECUTIVE_BAD):
        try:
            return source.read(index)
        except BadImageError as error:
            if not skip_bad_images:
                raise
            _skip(error, skipped)
            last_error = error
            index = replacement(index)
    raise _give_up(source, last_error)


def _read_or_next(source: Source[Item], index: int, skipped: list[str], *, skip_bad_images: bool) -> Item:
    """Read item `index`; a bad file is replaced by the next item (evaluation: no randomness)."""
    return _read_or_replace(
        source,
        index,
        skipped,
        skip_bad_images=skip_bad_images,
        replacement=lambda i: (i + 1) % len(source),
    )


def _pair_item(
    image_a: torch.Tensor, image_b: torch.Tensor, path_a: str, path_b: str, skipped: list[str]
) -> dict[str, Any]:
    return {"A": image_a, "B": image_b, "A_paths": path_a, "B_paths": path_b, "skipped": skipped}


class SeededTrainDataset(Dataset):
    """Base of the training datasets: every random draw of item i (which file, crops, flips, replacements
    for bad files) comes from a generator seeded by (seed, epoch, rank, i), never from a global RNG."""

    def __init__(self, *, seed: int, epoch: SharedEpoch, rank: int, skip_bad_images: bool) -> None:
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.skip_bad_images = skip_bad_images

    def draws(self, index: int) -> torch.Generator:
        """The generator of item ``index``'s random draws in the current epoch."""
        return sample_generator(self.seed, self.epoch.value, self.rank, index)

    def read(self, source: Source[Item], index: int, generator: torch.Generator, skipped: list[str]) -> Item:
        """Read item `index` of `source`; a bad file is replaced by a random item (or raised, when not
        skipping)."""

        def random_item(_index: int) -> int:
            return int(torch.randint(0, len(source), (1,), generator=generator))

        return _read_or_replace(
            source, index, skipped, skip_bad_images=self.skip_bad_images, replacement=random_item
        )


class UnpairedTrainDataset(SeededTrainDataset):
    """Training pairs as the reference makes them: A[i mod |A|] with a random B (or B[i mod |B|] when serial).

    Length is max(|A|, |B|).
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
        super().__init__(seed=seed, epoch=epoch, rank=rank, skip_bad_images=skip_bad_images)
        self.domain_a = domain_a
        self.domain_b = domain_b
        self.transform = transform
        self.serial_batches = serial_batches

    def __len__(self) -> int:
        return max(len(self.domain_a), len(self.domain_b))

    def __getitem__(self, index: int) -> dict[str, Any]:
        generator = self.draws(index)
        if self.serial_batches:
            b_index = index % len(self.domain_b)
        else:
            b_index = int(torch.randint(0, len(self.domain_b), (1,), generator=generator))
        skipped: list[str] = []
        image_a, path_a = self.read(self.domain_a, index % len(self.domain_a), generator, skipped)
        image_b, path_b = self.read(self.domain_b, b_index, generator, skipped)
        image_a, image_b = self.transform(image_a, generator), self.transform(image_b, generator)
        return _pair_item(image_a, image_b, path_a, path_b, skipped)


class UnpairedEvalDataset(Dataset):
    """Validation/test items without randomness: A[i mod |A|] with B[i mod |B|], length max(|A|, |B|).

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
        self.domain_a = domain_a
        self.domain_b = domain_b
        self.transform = transform
        self.skip_bad_images = skip_bad_images

    def __len__(self) -> int:
        return max(len(self.domain_a), len(self.domain_b))

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped: list[str] = []
        options = {"skip_bad_images": self.skip_bad_images}
        image_a, path_a = _read_or_next(self.domain_a, index % len(self.domain_a), skipped, **options)
        image_b, path_b = _read_or_next(self.domain_b, index % len(self.domain_b), skipped, **options)
        return _pair_item(self.transform(image_a), self.transform(image_b), path_a, path_b, skipped)


class PairedTrainDataset(SeededTrainDataset):
    """Training pairs of paired data (aligned files or paired folders): pair i with one random crop and
    flip shared by its A and B images, so they stay aligned. A bad file replaces the whole pair."""

    def __init__(
        self,
        pairs: Source[Pair],
        transform: TrainTransform,
        *,
        seed: int,
        epoch: SharedEpoch,
        rank: int = 0,
        skip_bad_images: bool = True,
    ) -> None:
        super().__init__(seed=seed, epoch=epoch, rank=rank, skip_bad_images=skip_bad_images)
        self.pairs = pairs
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        generator = self.draws(index)
        skipped: list[str] = []
        pair = self.read(self.pairs, index, generator, skipped)
        image_a, image_b = self.transform.pair(pair.image_a, pair.image_b, generator)
        return _pair_item(image_a, image_b, pair.path_a, pair.path_b, skipped)


class PairedEvalDataset(Dataset):
    """Validation/test pairs of paired data, in order; a bad file replaces its pair by the next pair
    (validation, with skip_bad_images) or raises naming the file (test)."""

    def __init__(self, pairs: Source[Pair], transform: EvalTransform, *, skip_bad_images: bool) -> None:
        self.pairs = pairs
        self.transform = transform
        self.skip_bad_images = skip_bad_images

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped: list[str] = []
        pair = _read_or_next(self.pairs, index, skipped, skip_bad_images=self.skip_bad_images)
        image_a, image_b = self.transform.pair(pair.image_a, pair.image_b)
        return _pair_item(image_a, image_b, pair.path_a, pair.path_b, skipped)


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
