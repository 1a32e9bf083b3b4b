"""The LightningDataModules: `ImageDataModule`, the machinery the unpaired (CycleGAN) and paired (pix2pix,
`cyclegan.data.paired`) modules share, and `UnpairedImageDataModule` over
ROOT/{trainA,trainB,testA,testB} (and valA/valB where present).

Batches are dicts: `A` and `B` float tensors in [-1, 1] of shape (batch, channels, H, W), `A_paths` and
`B_paths` lists of source files. With direction="BtoA" the domains swap roles: `A` then holds images
from the B folders (with input_nc channels), so the model always translates A -> B.

Stages:
- fit: random training pairs (see UnpairedTrainDataset); validation uses valA/valB when both exist,
  else testA/testB, else there is no validation.
- validate / test: A[i] with B[i mod |B|], no crop or flip; `test_preprocess="resize"` (default) resizes
  to crop_size x crop_size, as the reference's test mode does (it sets load_size = crop_size);
  `test_preprocess="none"` keeps each image's size (rounded to a multiple of 4) and uses batch size 1.
- predict: each file of the source domain's test folder (or of `predict_root`) once, as `A`/`A_paths`.

Bad files met during fit/validate are skipped and counted: `skipped` holds the total so far (restored on
resume), each skip is logged as a warning naming the file, and the running total goes to the trainer's
loggers as `data/skipped_images`. Test and predict raise on a bad file instead (outputs are per file).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from cyclegan.data.datasets import (
    DatasetError,
    SeededTrainDataset,
    SingleDomainDataset,
    UnpairedEvalDataset,
    UnpairedTrainDataset,
    collate_samples,
)
from cyclegan.data.decode import DEFAULT_MAX_IMAGE_PIXELS, BadImageError
from cyclegan.data.domains import DIRECTIONS
from cyclegan.data.files import EXPECTED_LAYOUT, DatasetRoot, find_local_images
from cyclegan.data.sampling import EpochSampler, SharedEpoch
from cyclegan.data.sources import ImageFolder
from cyclegan.data.transforms import RESIZING_CROPS, EvalTransform, TrainTransform
from cyclegan.errors import SettingError, check_bool, check_choice, check_int

log = logging.getLogger(__name__)

GET_A_DATASET = "get a reference dataset with cyclegan-download NAME or pass data.root=DIR"


class ImageDataModule(pl.LightningDataModule):
    """What the two-domain data modules share: their options, transforms, stages, loaders, the epoch and
    resume state, and the count of skipped bad files. A subclass lists its dataset layout in
    `train_dataset_for_fit`, `validation_split`, `eval_dataset` and `test_inputs`.

    Images stream from a local folder or any fsspec URL. Randomness (order, draws, crops, flips) is a
    pure function of (seed, epoch, rank, index): call set_epoch() at each epoch start (the training
    sampler also gets it from Lightning), and state_dict()/load_state_dict() carry seed, epoch and the
    skipped count across a resume. The training sampler shards the items over DDP ranks.

    Options beyond the reference's: `test_preprocess` ("resize" or "none", see the module docstring),
    `skip_bad_images` (False: a bad file raises BadImageError naming it), `max_image_pixels` (files
    whose header declares more pixels are refused before decoding), `predict_root` (a folder to
    predict on instead of the test split), `persistent_workers`, `pin_memory` (None: when CUDA is
    available).
    """

    # The folders expected under the root, and those of a validation split (for the errors naming them).
    expected_layout = EXPECTED_LAYOUT
    validation_layout = "valA/ and valB/, or testA/ and testB/"

    def __init__(
        self,
        root: str,
        *,
        direction: str = "AtoB",
        preprocess: str = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        max_dataset_size: int | None = None,
        input_nc: int = 3,
        output_nc: int = 3,
        batch_size: int = 1,
        num_workers: int = 4,
        seed: int = 0,
        test_preprocess: str = "resize",
        skip_bad_images: bool = True,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        predict_root: str | None = None,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        check_choice("direction", direction, DIRECTIONS, what="direction")
        check_choice("input_nc", input_nc, (1, 3), what="channel count")
        check_choice("output_nc", output_nc, (1, 3), what="channel count")
        for name, value, minimum in (
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("max_image_pixels", max_image_pixels, 1),
            ("seed", seed, 0),
        ):
            check_int(name, value, minimum)
        check_int("max_dataset_size", max_dataset_size, 1, optional=True)
        check_bool("skip_bad_images", skip_bad_images)
        check_bool("persistent_workers", persistent_workers)
        # the transforms check preprocess, test_preprocess, load_size, crop_size and flip
        self.train_transform = TrainTransform(preprocess, load_size, crop_size, flip)
        self.eval_transform = EvalTransform(test_preprocess, crop_size)
        if preprocess in RESIZING_CROPS and crop_size > load_size:
            raise SettingError(
                "crop_size",
                crop_size,
                f"is larger than {{load_size}}: a {crop_size}x{crop_size} crop does not fit in the "
                f"{load_size}-pixel resized image",
                related={"load_size": load_size},
            )
        # records this __init__'s arguments and the subclass's (Lightning reads both frames)
        self.save_hyperparameters()
        self.root = DatasetRoot(root, self.expected_layout)
        self.predict_source = DatasetRoot(predict_root) if predict_root is not None else None
        self.direction = direction
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.skip_bad_images = bool(skip_bad_images)
        self.max_dataset_size = None if max_dataset_size is None else int(max_dataset_size)
        self.channels = {"A": int(input_nc), "B": int(output_nc)}
        self.max_image_pixels = int(max_image_pixels)
        self.eval_batch_size = self.batch_size if test_preprocess == "resize" else 1
        self.persistent_workers = bool(persistent_workers)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.rank = 0
        self.skipped = 0
        self._epoch = SharedEpoch(0)
        self.train_dataset: SeededTrainDataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self.predict_dataset: Dataset | None = None

    # ------------------------------------------------------------------------- the subclass's layout
    @classmethod
    def check_training_folders(cls, settings: Mapping[str, Any]) -> None:
        """Raise a `SettingError` naming ``root`` when the local dataset folder of these data settings
        cannot train (missing, or without the folders training reads, or those without an image). Cheap
        (a listing of local folders), so a command fails before anything is built; remote roots are
        checked when they are listed."""
        root = str(settings["root"])
        if "://" in root:
            return
        folder = Path(root)
        if not folder.is_dir():
            where = "" if folder.is_absolute() else f", relative to the working directory {Path.cwd()}"
            raise SettingError("root", root, f"no such folder{where}; {GET_A_DATASET}")
        cls.check_training_layout(folder, settings)

    @classmethod
    def check_training_layout(cls, folder: Path, settings: Mapping[str, Any]) -> None:
        """The subclass's part of `check_training_folders`: the folders training reads under ``folder``."""
        raise NotImplementedError

    def train_dataset_for_fit(self) -> SeededTrainDataset:
        """The training dataset (files listed now; raises naming a missing or empty folder)."""
        raise NotImplementedError

    def validation_split(self) -> str | None:
        """The split validation reads ('val' or 'test'), None when the root has neither."""
        raise NotImplementedError

    def eval_dataset(self, split: str, skip_bad_images: bool) -> Dataset:
        """Items of ``split`` in order, without randomness, for validation and test."""
        raise NotImplementedError

    def test_inputs(self) -> Dataset:
        """What predict translates without a ``predict_root``: the source images of the test split."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        """List the files each stage needs (once); raises naming the folder when one is missing or empty."""
        if self.trainer is not None:
            self.rank = self.trainer.global_rank
        if stage in (None, "fit"):
            self.train_dataset = self.train_dataset_for_fit()
        if stage in (None, "fit", "validate"):
            split = self.validation_split()
            if split is None and stage == "validate":
                raise FileNotFoundError(
                    f"no validation split under {self.root.url!r}: expected {self.validation_layout}"
                )
            self.val_dataset = None if split is None else self.eval_dataset(split, self.skip_bad_images)
        if stage in (None, "test"):
            self.test_dataset = self.eval_dataset("test", skip_bad_images=False)
        if stage in (None, "predict"):
            self.predict_dataset = self._predict_dataset()

    def _predict_dataset(self) -> Dataset:
        if self.predict_source is None:
            return self.test_inputs()
        source = self.predict_source
        folder = ImageFolder(source, "", source.list_images(""), self.channels["A"], self.max_image_pixels)
        return SingleDomainDataset(folder, self.eval_transform)

    # ------------------------------------------------------------------------------------- dataloaders
    def train_dataloader(self) -> StatefulDataLoader:
        dataset = self._require(self.train_dataset, "fit")
        replicas, rank = 1, self.rank
        if self.trainer is not None:
            replicas, rank = self.trainer.world_size, self.trainer.global_rank
            # the epoch Lightning is about to train (it sets samplers' epochs only after creating the
            # first iterator of a resumed run, so take it from the loop now)
            self._epoch.set(self.trainer.fit_loop.epoch_progress.current.processed)
        sampler = EpochSampler(
            dataset,
            self._epoch,
            num_replicas=replicas,
            rank=rank,
            shuffle=self.shuffle_training_items,
            seed=self.seed,
        )
        return self._loader(dataset, self.batch_size, sampler=sampler)

    @property
    def shuffle_training_items(self) -> bool:
        """Whether the training sampler shuffles the items each epoch."""
        return True

    def val_dataloader(self) -> StatefulDataLoader | list:
        if self.val_dataset is None:
            return []
        return self._loader(self.val_dataset, self.eval_batch_size)

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader(self._require(self.test_dataset, "test"), self.eval_batch_size)

    def predict_dataloader(self) -> StatefulDataLoader:
        return self._loader(self._require(self.predict_dataset, "predict"), self.eval_batch_size)

    def _loader(self, dataset: Any, batch_size: int, sampler: Any = None) -> StatefulDataLoader:
        """A loader whose position Lightning saves in checkpoints and restores, so a mid-epoch resume
        continues with the next batch."""
        return StatefulDataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            worker_init_fn=ignore_stop_signals,
            # The loader's own generator for its worker base seeds: drawn from the global torch RNG, they
            # would shift it each time an iterator starts, and a resumed run (which starts one after the
            # RNGs are restored) would draw dropout and the like one step off. Our samples draw nothing
            # from the workers' RNGs (see sampling.py), so these seeds only keep the global RNG untouched.
            generator=torch.Generator().manual_seed(self.seed),
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    @staticmethod
    def _require(dataset: Any, stage: str) -> Any:
        if dataset is None:
            raise RuntimeError(f"call setup({stage!r}) before asking for the {stage} dataloader")
        return dataset

    # ------------------------------------------------------------------ epochs, state and bad-file count
    @property
    def epoch(self) -> int:
        return self._epoch.value

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch`: the order and every per-sample draw change with it (workers see it too)."""
        self._epoch.set(epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "epoch": self.epoch, "skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if int(state_dict["seed"]) != self.seed:
            log.info("resuming with the checkpoint's data seed %s (not %s)", state_dict["seed"], self.seed)
        self.seed = int(state_dict["seed"])
        if self.train_dataset is not None:
            self.train_dataset.seed = self.seed
        self._epoch.set(int(state_dict["epoch"]))
        self.skipped = int(state_dict["skipped"])

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Take the skipped-file list out of the batch, count it, and log the running total."""
        if isinstance(batch, dict) and "skipped" in batch:
            self.record_skipped(batch.pop("skipped"))
        return batch

    def record_skipped(self, paths: list[str]) -> None:
        """Add a batch's skipped files to `skipped`, warn, and send the total to the trainer's loggers."""
        if not paths:
            return
        self.skipped += len(paths)
        log.warning(
            "skipped %d unreadable image(s) (%d so far): %s", len(paths), self.skipped, ", ".join(paths)
        )
        if self.trainer is not None:
            for logger in self.trainer.loggers:
                logger.log_metrics(
                    {"data/skipped_images": float(self.skipped)}, step=self.trainer.global_step
                )


class UnpairedImageDataModule(ImageDataModule):
    """Unpaired two-domain images for CycleGAN: ROOT/{trainA,trainB,testA,testB} (valA/valB optional).

    ``serial_batches`` pairs A[i] with B[i mod |B|] and keeps the A order, instead of drawing B at random
    and shuffling A. The other options are `ImageDataModule`'s.
    """

    def __init__(self, root: str, *, serial_batches: bool = False, **options: Any) -> None:
        check_bool("serial_batches", serial_batches)
        super().__init__(root, **options)
        self.serial_batches = serial_batches
        self._folders: dict[tuple[str, str], ImageFolder] = {}

    @classmethod
    def check_training_layout(cls, folder: Path, settings: Mapping[str, Any]) -> None:
        missing = [split for split in ("trainA", "trainB") if not (folder / split).is_dir()]
        if missing:
            where = "" if folder.is_absolute() else f", relative to the working directory {Path.cwd()}"
            raise SettingError(
                "root",
                str(folder),
                f"missing dataset folder{'s' * (len(missing) > 1)} {' and '.join(missing)} (a dataset "
                f"folder holds trainA/ and trainB/, testA/ and testB/ optional{where}); {GET_A_DATASET}",
            )
        for split in ("trainA", "trainB"):
            if not find_local_images(folder / split).images:
                raise SettingError(
                    "root", str(folder), f"dataset folder {folder / split} holds no image file"
                )

    def _domain(self, split: str, role: str, limit: int | None = None) -> ImageFolder:
        """The folder for split ('train', 'val', 'test') and role ('A' source, 'B' target), listed once."""
        letter = role if self.direction == "AtoB" else {"A": "B", "B": "A"}[role]
        key = (f"{split}{letter}", role)
        if key not in self._folders:
            paths = self.root.list_images(key[0], limit)
            self._folders[key] = ImageFolder(
                self.root, key[0], paths, self.channels[role], self.max_image_pixels
            )
        return self._folders[key]

    def train_dataset_for_fit(self) -> UnpairedTrainDataset:
        return UnpairedTrainDataset(
            self._domain("train", "A", self.max_dataset_size),
            self._domain("train", "B", self.max_dataset_size),
            self.train_transform,
            serial_batches=self.serial_batches,
            seed=self.seed,
            epoch=self._epoch,
            rank=self.rank,
            skip_bad_images=self.skip_bad_images,
        )

    @property
    def shuffle_training_items(self) -> bool:
        return not self.serial_batches

    def validation_split(self) -> str | None:
        for split in ("val", "test"):
            if self.root.has_folder(f"{split}A") and self.root.has_folder(f"{split}B"):
                return split
        return None

    def eval_dataset(self, split: str, skip_bad_images: bool) -> UnpairedEvalDataset:
        return UnpairedEvalDataset(
            self._domain(split, "A"),
            self._domain(split, "B"),
            self.eval_transform,
            skip_bad_images=skip_bad_images,
        )

    def test_inputs(self) -> SingleDomainDataset:
        return SingleDomainDataset(self._domain("test", "A"), self.eval_transform)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker start-up: SIGTERM and SIGINT belong to the main process, which checkpoints and then
    shuts its workers down. A signal sent to the whole process group (Ctrl-C, systemd, SLURM's scancel,
    ``timeout``) would otherwise kill the workers first, and the main process with them."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


DATA_ERRORS = (BadImageError, DatasetError)


def data_error_message(error: BaseException) -> str | None:
    """The one-line message of a data problem (a bad image with ``skip_bad_images=False``, a folder of
    unreadable files, images that do not batch), raised here or in a DataLoader worker; None for others.

    torch re-raises a worker's exception in the main process with the worker's whole traceback as its
    message; the original message follows the exception's qualified name on the traceback's last line.
    """
    text = str(error)
    if isinstance(error, DATA_ERRORS) and not text.startswith("Caught "):
        return text
    first, _, rest = text.partition("\n")
    for kind in DATA_ERRORS:
        if first.startswith(f"Caught {kind.__name__} in DataLoader worker"):
            _, found, message = rest.rpartition(f"{kind.__module__}.{kind.__qualname__}: ")
            if found:
                return " ".join(line.strip() for line in message.strip().splitlines())
    return None
