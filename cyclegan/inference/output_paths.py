"""Checks on where the commands write: a folder that can be one, and outputs that are not inputs.

Files are compared as files (device and inode), not by name: a symlink or a hard link to an input is
that input, and writing through it would destroy it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file ``path`` reaches through any links; None when there is none."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def same_file_as_any(path: Path, others: Iterable[Path]) -> Path | None:
    """The first of ``others`` that is the very file ``path`` is (by any name), else None."""
    identity = file_identity(path)
    if identity is None:
        return None
    return next((other for other in others if file_identity(other) == identity), None)


def check_output_folder(folder: Path, setting: str = "output") -> None:
    """Raise a ValueError naming ``setting`` when ``folder`` cannot be a folder (it or a parent is a file)."""
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p.is_symlink())
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under {existing}, which is a file"
        raise ValueError(f"{setting}={folder} {where}, not a folder")
