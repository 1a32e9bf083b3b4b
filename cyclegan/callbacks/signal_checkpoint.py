"""`SignalCheckpoint`: signals act at iteration boundaries, so no run is lost and none is saved half-stepped.

SIGTERM / SIGINT: the handler only sets a flag. At the next iteration boundary (``on_train_batch_end``)
every process agrees on it (an all-reduce under DDP, so all ranks stop at the same step), writes
``last.ckpt`` through `RunCheckpoint` and raises `StopAfterSignal`, which ends ``fit`` at once: no
validation, epoch-end hooks (FID, scheduler steps), image grids or further checkpoints, as a stop through
``trainer.should_stop`` would run (a scheduler's grace period is ~30 s). cyclegan-train then exits with
status 128 + signal number. A second signal restores the previous handler and re-delivers the signal,
so a stuck run can still be killed at once.

A signal sent to the whole process group (Ctrl-C, systemd, SLURM's scancel, ``timeout``) reaches the
DataLoader workers too: they ignore it (`cyclegan.data.datamodule.ignore_stop_signals`), and once the
first signal is in, a worker that dies anyway no longer aborts the main process: torch's SIGCHLD check
is switched off for the rest of the process (it is ending; the workers may still exit during Lightning's
teardown), so the checkpoint is written and the exit status is the signal's.

SIGUSR1, when a handler is already installed for it (Lightning's SLURM auto-requeue: save
``hpc_ckpt_N.ckpt``, then ``scontrol requeue``): that handler is deferred to the next iteration boundary
too. Run from inside the signal handler it would checkpoint wherever the signal landed, e.g. between the
generator and the discriminator steps, and the resumed run would repeat half an iteration.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from cyclegan.callbacks.run_checkpoint import RunCheckpoint

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEFERRED_SIGNALS = (signal.SIGUSR1,)


class StopAfterSignal(Exception):
    """Ends ``trainer.fit`` right after the signal checkpoint is written; ``signum`` is the signal."""

    def __init__(self, signum: int, checkpoint_path: str) -> None:
        super().__init__(f"{signal.Signals(signum).name} received: saved {checkpoint_path}")
        self.signum = signum


class SignalCheckpoint(pl.Callback):
    """Checkpoint and stop on SIGTERM / SIGINT; run an existing SIGUSR1 handler at a step boundary."""

    def __init__(self) -> None:
        self._pending_stop = 0
        self._pending_deferred = 0
        self._previous: dict[int, Any] = {}

    # The handlers are installed when training starts, after Lightning's own (its SIGTERM handler would
    # stop the run without our checkpoint, its SLURM SIGUSR1 handler is the one deferred), and put back
    # before Lightning restores the original handlers at teardown.
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_stop_signal)
        for signum in DEFERRED_SIGNALS:
            handler = signal.getsignal(signum)
            if callable(handler):
                self._previous[signum] = handler
                signal.signal(signum, self._on_deferred_signal)
        rank_zero_info("cyclegan: SIGTERM/SIGINT will save a checkpoint at the next step and stop")

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._pending_stop:  # second signal: give up waiting for the step boundary
            self._restore_handlers()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self._pending_stop = signum
        # torch's SIGCHLD handler raises in the main process when a DataLoader worker dies: the run is
        # ending now, and a dying worker must not keep the checkpoint from being written
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    def _on_deferred_signal(self, signum: int, frame: FrameType | None) -> None:
        self._pending_deferred = signum

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        stop, deferred = self._agreed_signals(trainer)
        if deferred:
            self._pending_deferred = 0
            handler = self._previous.get(deferred)
            if callable(handler):
                rank_zero_info(
                    f"cyclegan: running the {signal.Signals(deferred).name} handler at step boundary"
                )
                handler(deferred, None)
        if not stop:
            return
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, RunCheckpoint):
            checkpoint.save_now(trainer)
            path = checkpoint.last_model_path
        else:
            path = str(Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt")
            trainer.save_checkpoint(path)
        rank_zero_info(
            f"cyclegan: {signal.Signals(stop).name} received: saved {path} at step {trainer.global_step}; "
            "stopping"
        )
        raise StopAfterSignal(stop, path)

    def _agreed_signals(self, trainer: pl.Trainer) -> tuple[int, int]:
        """(stop signal, deferred signal) any rank received (0 for none), the same on every rank."""
        pending = [self._pending_stop, self._pending_deferred]
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            flags = torch.tensor(pending, dtype=torch.int64, device=trainer.strategy.root_device)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            pending = [int(value) for value in flags.tolist()]
        return pending[0], pending[1]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
