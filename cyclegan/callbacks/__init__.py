"""Every Lightning callback of a training run, each added by config (conf/callbacks), and the run's
checkpoint plumbing.

Never lose a run: the checkpoint policy (`RunCheckpoint`), the plugin that writes and reads checkpoint
files (`AtomicCheckpointIO`, on `cyclegan.checkpoint_files`), checkpoint-and-stop on SIGTERM/SIGINT
(`SignalCheckpoint`), exact resume of RNGs and the position in the epoch (`TrainingStateCheckpoint`),
run-folder checks and locking (`run_folder`). See the run: image grids (`ImageGridLogger`) and FID/KID
during training (`FIDCallback`). Imports cyclegan.model and cyclegan.inference, never cyclegan.cli.
"""

import importlib
from typing import Any

# Loaded on first use: importing one callback does not import the others' dependencies.
_EXPORTS = {
    "AtomicCheckpointIO": "checkpoint_io",
    "FIDCallback": "fid",
    "ImageGridLogger": "image_grid",
    "RunCheckpoint": "run_checkpoint",
    "SignalCheckpoint": "signal_checkpoint",
    "StopAfterSignal": "signal_checkpoint",
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
