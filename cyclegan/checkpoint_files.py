"""Checkpoint files, read and written safely, on the local disk or any fsspec URL.

The one low module every part that touches checkpoint files imports (training callbacks, inference,
the commands): `load_checkpoint_file` turns every way a checkpoint can be unreadable (missing,
truncated, corrupt, holding objects that ``weights_only`` loading refuses) into one `CheckpointError`
that names the file; `save_atomically` writes so that a crash mid-write never leaves a half-written file
under the final name. Imports only torch and fsspec.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem

# Temporary files of an atomic write start with this; listings of checkpoints leave them out.
TEMP_PREFIX = ".tmp-"
# Keys our models add to a Lightning checkpoint: their per-process training state (image pools, RNG,
# epoch sums), and a record of the model class and which attribute holds the generator of each direction,
# so that inference can load any model's checkpoint without importing the training stack.
STATE_KEY = "cyclegan_state"
MODEL_KEY = "cyclegan_model"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: missing, truncated, corrupt or of the wrong kind."""


def is_local(path: str | os.PathLike) -> bool:
    """Whether ``path`` (a plain path or a URL) is on the local disk (``file://`` URLs included)."""
    return isinstance(fsspec.core.url_to_fs(str(path))[0], LocalFileSystem)


def local_path(path: str | os.PathLike) -> Path:
    """The local path of a plain path or a ``file://`` URL."""
    return Path(fsspec.core.url_to_fs(str(path))[1])


def load_checkpoint_file(
    path: str | os.PathLike, map_location: Any = "cpu", *, mmap: bool = False
) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; raise `CheckpointError` naming the file.

    ``path`` may be an fsspec URL. ``mmap=True`` maps the tensors of a local file instead of reading
    them: a cheap way to validate a file and read its metadata (zip checkpoints only).
    """
    fs, location = fsspec.core.url_to_fs(str(path))
    if not fs.exists(location):
        raise CheckpointError(f"checkpoint file not found: {path}")
    if not fs.isfile(location):
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    if fs.size(location) == 0:
        raise CheckpointError(f"checkpoint file is empty (0 bytes; an interrupted copy?): {path}")
    try:
        if isinstance(fs, LocalFileSystem):
            checkpoint = torch.load(location, map_location=map_location, weights_only=True, mmap=mmap)
        else:
            with fs.open(location, "rb") as file:
                checkpoint = torch.load(file, map_location=map_location, weights_only=True)
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


def save_atomically(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``checkpoint`` to ``path`` so that the file appears complete or not at all.

    Local files (plain paths, ``file://``) go through a temporary file in the same folder, fsync and
    ``os.replace``; other fsspec URLs are written to a temporary object that is then moved into place
    (object stores publish an object only when it is complete). A failed write (disk full, folder gone)
    raises `CheckpointError` naming the file and leaves the previous file untouched and no temporary file
    behind; a full disk is said in words, with the space left and the space the checkpoint needs.
    """
    if is_local(path):
        _save_local(checkpoint, local_path(path))
    else:
        _save_remote(checkpoint, str(path))


def _save_local(checkpoint: dict[str, Any], path: Path) -> None:
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


def _save_remote(checkpoint: dict[str, Any], url: str) -> None:
    fs, location = fsspec.core.url_to_fs(url)
    folder, name = location.rpartition("/")[::2]
    temp = f"{folder}/{TEMP_PREFIX}{name}.{os.getpid()}"
    try:
        fs.makedirs(folder, exist_ok=True)
        with fs.open(temp, "wb") as file:
            torch.save(checkpoint, file)
        fs.mv(temp, location)
    except (OSError, RuntimeError) as error:
        if fs.exists(temp):
            fs.rm(temp)
        raise CheckpointError(f"cannot write checkpoint {url}: {_first_line(error)}") from error


def _umask_permissions() -> int:
    """The mode a normally created file gets (0o666 less the umask): mkstemp would leave 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _first_line(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error).strip().splitlines()[0]


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
    return _first_line(error)


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


def checkpoint_exists(path: str | os.PathLike) -> bool:
    """Whether ``path`` (a plain path or an fsspec URL) is an existing file."""
    fs, location = fsspec.core.url_to_fs(str(path))
    return fs.isfile(location)


def remove_checkpoint_file(path: str | os.PathLike) -> None:
    """Delete a checkpoint file (local or URL); a missing one is fine."""
    fs, location = fsspec.core.url_to_fs(str(path))
    if fs.exists(location):
        fs.rm(location)


def find_latest_checkpoint(checkpoint_dir: str | os.PathLike) -> Path | str | None:
    """The most recently written checkpoint in ``checkpoint_dir`` (normally last.ckpt), or None: a Path
    for a local folder, the URL for another fsspec location. Lightning's SLURM requeue checkpoints
    (hpc_ckpt_N.ckpt in the parent folder) count too; temporary files of an unfinished write do not."""
    fs, folder = fsspec.core.url_to_fs(str(checkpoint_dir))
    folder = folder.rstrip("/")
    parent = folder.rpartition("/")[0]
    candidates = []
    for pattern in (f"{folder}/*.ckpt", f"{parent}/hpc_ckpt_*.ckpt"):
        for found in fs.glob(pattern):
            name = found.rpartition("/")[2]
            if not name.startswith(TEMP_PREFIX) and fs.isfile(found):
                candidates.append(found)
    if not candidates:
        return None
    newest = max(candidates, key=lambda found: (_modified(fs, found), found.endswith("/last.ckpt")))
    return Path(newest) if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(newest)


def _modified(fs: fsspec.AbstractFileSystem, path: str) -> float:
    info = fs.info(path)
    for key in ("mtime", "created", "LastModified", "last_modified"):
        value = info.get(key)
        if value is not None:
            return value.timestamp() if hasattr(value, "timestamp") else float(value)
    return 0.0
