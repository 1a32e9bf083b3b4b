"""Callbacks and helpers that make a training run impossible to lose.

The Lightning plugin that writes and reads checkpoints (`AtomicCheckpointIO`, on
`cyclegan.checkpoint_files`), the checkpoint policy (`RunCheckpoint`),
checkpoint-and-stop on SIGTERM/SIGINT (`SignalCheckpoint`), exact resume of RNGs and the position in
the epoch (`TrainingStateCheckpoint`) and run-folder checks and locking (`run_folder`). Sits at the
model level: imports cyclegan.model, never cyclegan.cli.
"""

import importlib
from typing import Any

# Loaded on first use: importing one callback does not import the others' dependencies.
_EXPORTS = {
    "AtomicCheckpointIO": "checkpoint_io",
    "RunCheckpoint": "checkpointing",
    "SignalCheckpoint": "preemption",
    "StopAfterSignal": "preemption",
    "RunFolderError": "run_folder",
    "RunFolderLock": "run_folder",
    "check_run_folder": "run_folder",
    "TrainingStateCheckpoint": "training_state",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cyclegan.callbacks.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cyclegan.callbacks' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
