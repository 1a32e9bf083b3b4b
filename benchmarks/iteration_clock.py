"""A Lightning callback that records when each training iteration starts and each epoch ends, for
benchmarks/vs_reference.py (added to cyclegan-train with a Hydra override, PYTHONPATH=benchmarks)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class IterationClock(pl.Callback):
    """Writes ``{"iteration_starts": [...], "epoch_ends": [...]}`` (perf_counter seconds) to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.iteration_starts: list[float] = []
        self.epoch_ends: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.iteration_starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch_ends.append(time.perf_counter())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.path.write_text(
            json.dumps({"iteration_starts": self.iteration_starts, "epoch_ends": self.epoch_ends})
        )
