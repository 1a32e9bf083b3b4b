"""`TrainingStateCheckpoint`: the state Lightning's checkpoints leave out, so a resume is exact.

* Every global RNG of every process (Python ``random``, NumPy, torch CPU and the current CUDA device),
  gathered from all ranks and restored per rank. Stored as plain lists and tensors so the checkpoint
  still loads with ``torch.load(weights_only=True)`` (a NumPy array would not).
* A checkpoint written at an epoch's end (inside ``on_train_epoch_end``) records that epoch as finished.
  Lightning saves it before counting the epoch as completed; with ``max_steps`` set it then treats the
  resume as a restart inside that epoch: it trains one more batch of it and runs its epoch-end hooks
  again. Recording the loop state the epoch ends with makes the resumed run start the next epoch (and its
  training dataloader from the start, not from the saved end of the finished epoch).

The position inside an epoch needs nothing here: the data modules train through torchdata's
``StatefulDataLoader``, whose state Lightning saves and restores, and every draw of a sample is a pure
function of (seed, epoch, rank, index), so the resumed iterator yields exactly the batches the
interrupted run would have seen, with any number of workers.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from cyclegan.model.distributed import gather_from_processes

log = logging.getLogger(__name__)

STATE_VERSION = 2  # version 1 also held the trained batches of the epoch


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


class TrainingStateCheckpoint(pl.Callback):
    """Save and restore the RNG states of all ranks; mark epoch-end checkpoints as finished epochs."""

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
        return {"version": STATE_VERSION, "rng": gather_from_processes(capture_rng_state())}

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        epochs = trainer.fit_loop.epoch_progress.current
        if epochs.processed > epochs.completed and "fit_loop" in checkpoint.get("loops", {}):
            mark_epoch_completed(checkpoint["loops"]["fit_loop"])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        version = state_dict.get("version")
        if version not in (1, STATE_VERSION):
            raise ValueError(f"training state version {version} is not {STATE_VERSION}")
        if version == 1 and state_dict.get("batches_done"):
            log.warning(
                "this checkpoint was written mid-epoch before the data loader's position was saved with "
                "it: the resumed run starts that epoch's data again"
            )
        trainer = self._trainer
        rank = trainer.global_rank if trainer is not None else 0
        states = state_dict["rng"]
        restore_rng_state(states[rank % len(states)])


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
    fit_loop_state.get("state_dict", {}).pop("combined_loader", None)  # the next epoch's loader starts anew
