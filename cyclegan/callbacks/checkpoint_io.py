"""Reading and writing checkpoint files safely.

`load_checkpoint_file` turns every way a checkpoint can be unreadable (missing, truncated, corrupt,
holding objects that ``weights_only`` loading refuses) into one `CheckpointError` that names the file.
`AtomicCheckpointIO` is the Lightning plugin that writes through a temporary file, fsync and
``os.replace``, so a crash mid-write never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.checkpoint_io import CheckpointIO

TEMP_PREFIX = ".tmp-"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: missing, truncated, corrupt or of the wrong kind."""


def load_checkpoint_file(
    path: str | os.PathLike, map_location: Any = "cpu", *, mmap: bool = False
) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; raise `CheckpointError` naming the file.

    ``mmap=True`` maps the tensors instead of reading them: a cheap way to validate a file and read its
    metadata (zip checkpoints only; the legacy format raises `CheckpointError`).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty (0 bytes; an interrupted copy?): {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if refused:
            raise CheckpointError(
                f"cannot read checkpoint {path}: it holds a {refused.group(1)} object, which safe loading "
                "(torch.load weights_only=True) refuses; checkpoints must hold plain containers and tensors"
            ) from None
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupt or not a checkpoint"
        ) from None
    except Exception as error:  # torch.load on damaged bytes fails in many ways (zip, EOF, index, key...)
        reason = _short_reason(error)
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or corrupt ({reason})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(checkpoint).__name__}, not a dict of training state"
        )
    return checkpoint


def _short_reason(error: BaseException) -> str:
    """The first line of an error message, without PyTorch's internal zip-reader details."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    first = text.splitlines()[0]
    if "PytorchStreamReader" in first:
        return "not a complete checkpoint archive"
    return first


def _umask_permissions() -> int:
    """The mode a normally created file gets (0o666 less the umask): mkstemp would leave 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save_atomically(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``checkpoint`` to ``path`` via a temporary file in the same folder, fsync and ``os.replace``.

    A failed write (disk full, folder gone) raises `CheckpointError` naming the file and leaves the
    previous file under ``path`` untouched and no temporary file behind; a full disk is said in words,
    with the space left and the space the checkpoint needs.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", dir=path.parent)
        os.chmod(temp_name, _umask_permissions())
    except OSError as error:
        raise CheckpointError(f"cannot write checkpoint {path}: {error.strerror or error}") from error
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as a RuntimeError
        Path(temp_name).unlink(missing_ok=True)
        reason = _write_failure(error, path.parent, checkpoint)
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}") from error
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _write_failure(error: BaseException, folder: Path, checkpoint: dict[str, Any]) -> str:
    """Why writing failed. torch.save turns a full disk into ``[enforce fail at inline_container.cc]
    unexpected pos``, with the ENOSPC OSError only in the exception's context: look for it there."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            free_mb = shutil.disk_usage(folder).free / 2**20
            needed_mb = _tensor_bytes(checkpoint) / 2**20
            needed = f"about {needed_mb:.0f} MB" if needed_mb >= 1 else "less than 1 MB"
            return (
                f"no space left on device ({free_mb:.0f} MB free in {folder}, the checkpoint needs "
                f"{needed}); free some space (an earlier file of this name is kept as it was)"
            )
        cause = cause.__cause__ or cause.__context__
    return getattr(error, "strerror", None) or str(error).strip().splitlines()[0]


def _tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in a checkpoint's nested dicts, lists and tuples (what dominates its size)."""
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(item) for item in value)
    return 0


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(CheckpointIO):
    """Lightning CheckpointIO plugin: atomic local writes, safe (``weights_only``) reads with clear errors."""

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
        Path(path).unlink(missing_ok=True)
