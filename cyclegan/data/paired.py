"""`PairedImageDataModule`: paired images for pix2pix, in the reference's aligned format or as paired folders.

Layouts (``format``):
- ``aligned``: ROOT/train, ROOT/test (ROOT/val optional), each image holding A on its left half and B on
  its right half, as the reference's pix2pix datasets (facades, maps, edges2shoes, ...) ship;
- ``folders``: ROOT/trainA with ROOT/trainB (testA/testB, valA/valB optional), ``trainA/x.png`` paired
  with ``trainB/x.png`` by relative path (extension aside); files without a partner are listed in a
  warning and left out;
- ``auto`` (default): whichever of the two the root holds.

Batches, stages, streaming, bad-file handling, resume and DDP sharding are `ImageDataModule`'s; the
difference is that item i is a pair: the same random crop and flip apply to its A and B images, and a
bad file replaces the whole pair. ``direction="BtoA"`` swaps the halves (or folders), so that `A` is
always the model's input. Validation and test pair i is pair i, resized like the unpaired module's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cyclegan.data.datamodule import ImageDataModule
from cyclegan.data.datasets import PairedEvalDataset, PairedTrainDataset, Source
from cyclegan.data.files import PAIRED_LAYOUT, DatasetRoot, find_local_images
from cyclegan.data.sources import AlignedPairs, FolderPairs, ImageFolder, Pair, match_pairs
from cyclegan.errors import SettingError, check_choice

PAIRED_FORMATS = ("auto", "aligned", "folders")
_SPLITS = ("train", "val", "test")


def detect_format(root: DatasetRoot, requested: str = "auto") -> str:
    """``aligned`` or ``folders``: the ``requested`` format, or for ``auto`` the layout the root holds."""
    check_choice("format", requested, PAIRED_FORMATS, what="paired data format")
    if requested != "auto":
        return requested
    aligned = any(root.has_folder(split) for split in _SPLITS)
    folders = any(root.has_folder(f"{split}A") and root.has_folder(f"{split}B") for split in _SPLITS)
    if aligned and folders:
        raise ValueError(
            f"dataset root {root.url!r} holds both aligned splits (train/, test/) and paired folders "
            "(trainA/, trainB/): set format (data.format) to aligned or folders"
        )
    if not aligned and not folders:
        raise FileNotFoundError(f"dataset root {root.url!r} holds no paired data; {PAIRED_LAYOUT}")
    return "aligned" if aligned else "folders"


class PairedImageDataModule(ImageDataModule):
    """Paired two-domain images for pix2pix (see the module docstring for the layouts).

    ``format``: auto, aligned or folders. The other options are `ImageDataModule`'s; ``max_dataset_size``
    counts pairs.
    """

    expected_layout = PAIRED_LAYOUT

    @classmethod
    def check_training_layout(cls, folder: Path, settings: Mapping[str, Any]) -> None:
        """The format the root holds (detected as the module does) and its training folder(s)."""
        try:
            layout = detect_format(DatasetRoot(str(folder), PAIRED_LAYOUT), settings.get("format", "auto"))
        except (OSError, ValueError) as error:
            raise SettingError("root", str(folder), str(error)) from None
        for name in ("train",) if layout == "aligned" else ("trainA", "trainB"):
            if not (folder / name).is_dir() or not find_local_images(folder / name).images:
                raise SettingError(
                    "root",
                    str(folder),
                    f"{folder / name} ({layout} layout) is missing or holds no image file; {PAIRED_LAYOUT}",
                )

    def __init__(self, root: str, *, format: str = "auto", **options: Any) -> None:
        super().__init__(root, **options)
        self.format = detect_format(self.root, format)
        self.validation_layout = "val/ or test/" if self.format == "aligned" else self.validation_layout
        self._sources: dict[str, Source[Pair]] = {}

    def _pairs(self, split: str, limit: int | None = None) -> Source[Pair]:
        """The pairs of split ('train', 'val', 'test'), listed once."""
        if split in self._sources:
            return self._sources[split]
        if self.format == "aligned":
            channels = (self.channels["A"], self.channels["B"])
            paths = self.root.list_images(split, limit)
            images = ImageFolder(self.root, split, paths, max(channels), self.max_image_pixels)
            source: Source[Pair] = AlignedPairs(images, channels, swap=self.direction == "BtoA")
        else:
            letters = {"A": "A", "B": "B"} if self.direction == "AtoB" else {"A": "B", "B": "A"}
            folders = {role: f"{split}{letter}" for role, letter in letters.items()}
            paths_a, paths_b = match_pairs(self.root, folders["A"], folders["B"], limit)
            source = FolderPairs(
                *(
                    ImageFolder(self.root, folders[role], paths, self.channels[role], self.max_image_pixels)
                    for role, paths in (("A", paths_a), ("B", paths_b))
                )
            )
        self._sources[split] = source
        return source

    def train_dataset_for_fit(self) -> PairedTrainDataset:
        return PairedTrainDataset(
            self._pairs("train", self.max_dataset_size),
            self.train_transform,
            seed=self.seed,
            epoch=self._epoch,
            rank=self.rank,
            skip_bad_images=self.skip_bad_images,
        )

    def validation_split(self) -> str | None:
        for split in ("val", "test"):
            folders = (split,) if self.format == "aligned" else (f"{split}A", f"{split}B")
            if all(self.root.has_folder(folder) for folder in folders):
                return split
        return None

    def eval_dataset(self, split: str, skip_bad_images: bool) -> PairedEvalDataset:
        return PairedEvalDataset(self._pairs(split), self.eval_transform, skip_bad_images=skip_bad_images)

    def test_inputs(self) -> PairedEvalDataset:
        return self.eval_dataset("test", skip_bad_images=False)
