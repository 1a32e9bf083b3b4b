"""The run folder: checked before training, searched for checkpoints, summarized at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cyclegan.callbacks.checkpoint_io import TEMP_PREFIX


class RunFolderError(RuntimeError):
    """The run folder cannot hold this run's outputs (not writable, or too little free space)."""


def check_run_folder(folder: str | os.PathLike, min_free_mb: float) -> None:
    """Fail now, not at the first checkpoint, when ``folder`` is not writable or has too little space."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=TEMP_PREFIX + "write-test.") as probe:
            probe.write(b"0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise RunFolderError(f"run folder {folder} is not writable: {error.strerror or error}") from None
    free_mb = shutil.disk_usage(folder).free / 2**20
    if free_mb < min_free_mb:
        raise RunFolderError(
            f"run folder {folder} has {free_mb:.0f} MB free, less than min_free_disk_mb={min_free_mb:g}: "
            "free some space or choose another folder (hydra.run.dir=...)"
        )


def find_latest_checkpoint(checkpoint_dir: str | os.PathLike) -> Path | None:
    """The most recently written checkpoint in ``checkpoint_dir`` (normally last.ckpt), or None.

    Lightning's SLURM requeue checkpoints (hpc_ckpt_N.ckpt in the run folder) count too.
    """
    checkpoint_dir = Path(checkpoint_dir)
    last = checkpoint_dir / "last.ckpt"
    candidates = [
        path
        for path in [*checkpoint_dir.glob("*.ckpt"), *checkpoint_dir.parent.glob("hpc_ckpt_*.ckpt")]
        if not path.name.startswith(TEMP_PREFIX) and path.is_file()
    ]
    if not candidates:
        return None
    newest = max(candidates, key=lambda path: (path.stat().st_mtime_ns, path == last))
    return newest
