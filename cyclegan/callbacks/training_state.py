"""`TrainingStateCheckpoint`: the state Lightning's checkpoints leave out, so a resume is exact.

* Every global RNG of every process (Python ``random``, NumPy, torch CPU and the current CUDA device),
  gathered from all ranks and restored per rank. Stored as plain lists and tensors so the checkpoint
  still loads with ``torch.load(weights_only=True)`` (a NumPy array would not).
* The position inside the epoch: how many batches of the current epoch were trained. Lightning restores
  its loop counters but restarts the training dataloader from the epoch's first batch; on a mid-epoch
  resume this callback makes the first iterator of the resumed run skip the batches already trained.
  Every draw of the data module is a pure function of (seed, epoch, rank, index), so skipping indices in
  the sampler reproduces exactly the batches the interrupted run would have seen, with any number of
  workers.
* A checkpoint written at an epoch's end (inside ``on_train_epoch_end``) records that epoch as finished.
  Lightning saves it before counting the epoch as completed; with ``max_steps`` set it then treats the
  resume as a restart inside that epoch: it trains one more batch of it and runs its epoch-end hooks
  again. Recording the loop state the epoch ends with makes the resumed run start the next epoch.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from cyclegan.model.distributed import gather_from_processes

STATE_VERSION = 1


def capture_rng_state() -> dict[str, Any]:
    """This process's global RNG states as plain containers and tensors."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "python": [version, list(internal), gauss],
        "numpy": [str(kind), keys.tolist(), int(pos), int(has_gauss), float(cached_gaussian)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else None,
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class SkipFirst(Sampler[int]):
    """Yields ``sampler``'s indices, leaving out the first ``count`` of its next iteration only.

    Its length stays the full epoch's, as Lightning counts the resumed epoch's batches from where the
    interrupted run stopped.
    """

    def __init__(self, sampler: Any, count: int) -> None:
        self.sampler = sampler
        self.count = count

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[int]:
        count, self.count = self.count, 0
        for position, index in enumerate(self.sampler):
            if position >= count:
                yield index


class TrainingStateCheckpoint(pl.Callback):
    """Save and restore the RNG states of all ranks and the position inside the current epoch."""

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None

    @property
    def state_key(self) -> str:
        return type(self).__qualname__

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        if trainer is None:
            return {}
        states = gather_from_processes(capture_rng_state())
        epochs = trainer.fit_loop.epoch_progress.current
        mid_epoch = epochs.started > epochs.processed  # false in on_train_epoch_end and after the loop
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"version": STATE_VERSION, "rng": states, "batches_done": batches if mid_epoch else 0}

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        epochs = trainer.fit_loop.epoch_progress.current
        if epochs.processed > epochs.completed and "fit_loop" in checkpoint.get("loops", {}):
            mark_epoch_completed(checkpoint["loops"]["fit_loop"])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if state_dict.get("version") != STATE_VERSION:
            raise ValueError(f"training state version {state_dict.get('version')} is not {STATE_VERSION}")
        trainer = self._trainer
        rank = trainer.global_rank if trainer is not None else 0
        states = state_dict["rng"]
        restore_rng_state(states[rank % len(states)])
        batches_done = int(state_dict["batches_done"])
        if trainer is not None and trainer.datamodule is not None and batches_done:
            _skip_in_next_train_dataloader(trainer.datamodule, batches_done)
            # Lightning warns that a plain DataLoader cannot resume mid-epoch; this callback does it
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before")


def mark_epoch_completed(fit_loop_state: dict[str, Any]) -> None:
    """Turn a fit-loop state saved in ``on_train_epoch_end`` into the state at that epoch's completion.

    The epoch counts as completed and the per-epoch batch counters start again from zero, as Lightning
    does once the epoch-end hooks have run; the run totals (and ``_batches_that_stepped``) are kept.
    """
    for progress in fit_loop_state["epoch_progress"].values():
        progress["completed"] = progress["processed"]
    batches = fit_loop_state["epoch_loop.batch_progress"]
    batches["current"] = {name: 0 for name in batches["current"]}
    batches["is_last_batch"] = False


def _skip_in_next_train_dataloader(datamodule: pl.LightningDataModule, batches: int) -> None:
    """Make the data module's next train dataloader start after ``batches`` already trained."""
    make_loader = datamodule.train_dataloader

    def train_dataloader() -> DataLoader:
        del datamodule.train_dataloader  # one-shot: later calls get the data module's own method
        loader = make_loader()
        batch_sampler = loader.batch_sampler
        if batch_sampler is None or not hasattr(batch_sampler, "sampler"):
            raise TypeError(
                "mid-epoch resume needs a DataLoader with a batch_size (an automatic batch sampler)"
            )
        batch_sampler.sampler = SkipFirst(batch_sampler.sampler, batches * batch_sampler.batch_size)
        return loader

    datamodule.train_dataloader = train_dataloader
