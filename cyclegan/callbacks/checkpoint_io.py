"""`AtomicCheckpointIO`: the Lightning plugin through which every training checkpoint is written and read.

Built on Lightning's `TorchCheckpointIO`, so a checkpoint folder may be any fsspec URL (``file://``,
``s3://``, ``memory://``), with our file handling (`cyclegan.checkpoint_files`): atomic writes with fsync
and a clear message for a full disk, ``weights_only`` reads with one clear error per unreadable file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from cyclegan.checkpoint_files import (
    CheckpointError,
    load_checkpoint_file,
    remove_checkpoint_file,
    save_atomically,
)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Atomic writes, safe (``weights_only``) reads with clear errors, on any fsspec location."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_atomically(checkpoint, path)

    def load_checkpoint(
        self,
        path: str | os.PathLike,
        map_location: Callable | str | torch.device | None = "cpu",
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if weights_only is False:
            raise CheckpointError(
                f"refusing to load {path} with weights_only=False; checkpoints are plain data"
            )
        return load_checkpoint_file(path, map_location="cpu" if map_location is None else map_location)

    def remove_checkpoint(self, path: str | os.PathLike) -> None:
        remove_checkpoint_file(path)
