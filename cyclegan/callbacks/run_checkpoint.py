"""`RunCheckpoint`: the run's checkpoint policy on top of Lightning's ModelCheckpoint.

Saves every ``every_n_train_steps`` optimizer steps (two per CycleGAN iteration), at the end of every
``every_n_epochs``-th epoch and at the end of training; ``last.ckpt`` is rewritten with each save, and only
the newest ``keep_last_k`` other checkpoints are kept. ``dirpath`` is a local folder or any fsspec URL.
Files are written by the Trainer's CheckpointIO (`AtomicCheckpointIO` in cyclegan-train), so each one
appears complete or not at all.
"""

from __future__ import annotations

import os
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from cyclegan.checkpoint_files import is_local, local_path
from cyclegan.model import NonFiniteLossError


class RunCheckpoint(ModelCheckpoint):
    """Step, epoch and end-of-training checkpoints with keep-last-K, plus ``last.ckpt``.

    A step save happens when ``trainer.global_step`` crosses a multiple of ``every_n_train_steps`` (not
    only when it lands on one: a step skipped for a non-finite loss can make the count odd). When
    training stops on :class:`~cyclegan.model.NonFiniteLossError` the weights are still those of the
    last finite step, so they are saved too.
    """

    FILENAME = "epoch{epoch:04d}-step{step:08d}"

    def __init__(
        self,
        dirpath: str | os.PathLike,
        every_n_train_steps: int = 2000,
        every_n_epochs: int = 1,
        keep_last_k: int = 3,
    ) -> None:
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be >= 1, got {every_n_train_steps}")
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if keep_last_k < 1:
            raise ValueError(f"keep_last_k must be >= 1, got {keep_last_k}")
        if is_local(dirpath):  # Lightning would take a file:// URL for a relative path
            dirpath = local_path(dirpath)
        # monitor "step" (mode max) turns Lightning's top-k into "the newest k"
        super().__init__(
            dirpath=dirpath,
            filename=self.FILENAME,
            monitor="step",
            mode="max",
            save_top_k=keep_last_k,
            save_last=True,
            auto_insert_metric_name=False,
            every_n_epochs=every_n_epochs,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )
        self.every_n_steps = every_n_train_steps

    @property
    def state_key(self) -> str:
        # one key whatever the settings, so a resume with another interval still prunes old files
        return type(self).__qualname__

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resumed run has its current step saved already
        self._last_global_step_saved = trainer.global_step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._should_skip_saving_checkpoint(trainer):
            return
        if trainer.global_step // self.every_n_steps > self._last_global_step_saved // self.every_n_steps:
            self.save_now(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # the final epoch is saved at its end whatever every_n_epochs, so its file names that epoch
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        final_epoch = 0 < max_epochs <= trainer.current_epoch + 1
        if final_epoch and not self._should_skip_saving_checkpoint(trainer):
            self.save_now(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self.save_now(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, NonFiniteLossError) and not self._should_skip_saving_checkpoint(trainer):
            self.save_now(trainer)

    def save_now(self, trainer: pl.Trainer) -> None:
        """Save a step checkpoint and ``last.ckpt`` now (all ranks must call it; rank 0 writes)."""
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
