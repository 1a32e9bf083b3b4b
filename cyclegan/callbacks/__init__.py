"""Callbacks and helpers that make a training run impossible to lose.

Atomic checkpoint files and safe loading (`checkpoint_io`), the checkpoint policy (`RunCheckpoint`),
checkpoint-and-stop on SIGTERM/SIGINT (`SignalCheckpoint`), exact resume of RNGs and the position in
the epoch (`TrainingStateCheckpoint`) and run-folder checks and locking (`run_folder`). Sits at the
model level: imports cyclegan.model, never cyclegan.cli.
"""

import importlib
from typing import Any

# Loaded on first use, so that `cyclegan.callbacks.checkpoint_io` (used by inference) does not pull in
# the LightningModule.
_EXPORTS = {
    "AtomicCheckpointIO": "checkpoint_io",
    "CheckpointError": "checkpoint_io",
    "load_checkpoint_file": "checkpoint_io",
    "save_atomically": "checkpoint_io",
    "RunCheckpoint": "checkpointing",
    "SignalCheckpoint": "preemption",
    "StopAfterSignal": "preemption",
    "RunFolderError": "run_folder",
    "RunFolderLock": "run_folder",
    "check_run_folder": "run_folder",
    "find_latest_checkpoint": "run_folder",
    "TrainingStateCheckpoint": "training_state",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cyclegan.callbacks.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cyclegan.callbacks' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
