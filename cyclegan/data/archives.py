"""Safe, atomic extraction of the dataset archives: the reference's CycleGAN ``.zip`` and pix2pix ``.tar.gz``.

Every entry is checked before anything is written: no absolute path, no ``..``, no link, device or other
special file, no name used both for a file and for a folder, no compression beyond MAX_COMPRESSION_RATIO
(bombs), and enough free space for all of it. Extraction goes to a temporary folder beside the target,
renamed into place at the end and removed on any failure, so the target appears complete or not at all.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import NamedTuple

# The reference datasets are JPEGs, which deflate barely at all; an entry (zip) or an archive (tar.gz,
# compressed as a whole) over _RATIO_CHECKED_FROM bytes that claims to shrink more than this is a bomb.
MAX_COMPRESSION_RATIO = 100
_RATIO_CHECKED_FROM = 1 << 20
# What a corrupt archive raises while it is read.
ARCHIVE_READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError)


class DatasetDownloadError(RuntimeError):
    """A dataset could not be downloaded or extracted; the message says what and where."""


class BadArchiveError(DatasetDownloadError):
    """The archive itself is refused (unsafe, clashing or bomb-like entries); its download is dropped."""


class Member(NamedTuple):
    """One archive entry as the checks see it. ``packed``: its compressed size (None when the archive is
    compressed as a whole); ``special``: what it is when it is neither a file nor a folder."""

    name: str
    is_dir: bool
    size: int
    packed: int | None
    special: str | None


def zip_members(bundle: zipfile.ZipFile) -> list[Member]:
    return [
        Member(
            info.filename,
            info.is_dir(),
            info.file_size,
            info.compress_size,
            "symbolic link" if stat.S_ISLNK(info.external_attr >> 16) else None,
        )
        for info in bundle.infolist()
    ]


def _tar_kind(info: tarfile.TarInfo) -> str | None:
    if info.isfile() or info.isdir():
        return None
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device file"
    return "FIFO" if info.isfifo() else "special entry"


def tar_members(bundle: tarfile.TarFile) -> list[Member]:
    return [Member(info.name, info.isdir(), info.size, None, _tar_kind(info)) for info in bundle.getmembers()]


def unsafe_member(member: Member) -> str | None:
    """Why an entry must not be extracted (absolute, escaping the folder, link, special file), else None."""
    name = member.name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in PurePosixPath(name).parts:
        return "path escapes the target folder"
    return member.special


def clashing_member(members: list[Member]) -> str | None:
    """A name the archive uses both for a file and for a folder (it cannot be extracted), else None."""
    files, folders = set(), set()
    for member in members:
        parts = PurePosixPath(member.name.replace("\\", "/")).parts
        folders.update("/".join(parts[:end]) for end in range(1, len(parts)))
        (folders if member.is_dir else files).add("/".join(parts))
    return min(files & folders, default=None)


def bomb_problem(members: list[Member], archive_size: int) -> str | None:
    """What claims to inflate more than MAX_COMPRESSION_RATIO times: an entry of a zip, or a whole tar.gz."""
    for member in members:
        if member.packed is None or member.size <= _RATIO_CHECKED_FROM:
            continue
        if member.size > MAX_COMPRESSION_RATIO * max(member.packed, 1):
            return (
                f"entry {member.name!r} would inflate {member.packed} bytes into {member.size} (over "
                f"{MAX_COMPRESSION_RATIO}:1, a zip bomb)"
            )
    total = sum(member.size for member in members if member.packed is None)
    if total > _RATIO_CHECKED_FROM and total > MAX_COMPRESSION_RATIO * max(archive_size, 1):
        return f"it would inflate {archive_size} bytes into {total} (over {MAX_COMPRESSION_RATIO}:1, a bomb)"
    return None


def check_members(archive: Path, members: list[Member], folder: Path) -> None:
    """Refuse, before anything is written, an archive that is empty, unsafe, clashing or a bomb
    (BadArchiveError), or that would not fit in the free space of ``folder`` (DatasetDownloadError)."""
    if not members:
        raise BadArchiveError(f"{archive} is an empty archive")
    for member in members:
        reason = unsafe_member(member)
        if reason is not None:
            raise BadArchiveError(f"refusing {archive}: entry {member.name!r} is unsafe ({reason})")
    clash = clashing_member(members)
    if clash is not None:
        raise BadArchiveError(f"refusing {archive}: {clash!r} is both a file and a folder in it")
    bomb = bomb_problem(members, archive.stat().st_size)
    if bomb is not None:
        raise BadArchiveError(f"refusing {archive}: {bomb}")
    needed = sum(member.size for member in members)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DatasetDownloadError(
            f"{archive} unpacks to {needed / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB are free in "
            f"{folder}; free some space and run again (the download is kept)"
        )


def _land(archive: Path, target: Path, extract: Callable[[Path], None]) -> None:
    """``extract(staging)`` into a temporary folder beside ``target``, then rename it into place; a single
    top-level folder in the archive (the reference archives hold NAME/...) becomes ``target``."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.extracting-", dir=target.parent))
    try:
        extract(staging)
        entries = list(staging.iterdir())
        content = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        os.rename(content, target)
    except ARCHIVE_READ_ERRORS:  # a corrupt archive (gzip's errors are OSErrors too): the caller says so
        raise
    except OSError as error:
        raise DatasetDownloadError(f"cannot extract {archive} into {target.parent}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


ARCHIVE_KINDS = ("zip", "tar.gz")


def extract_atomically(archive: Path, target: Path, kind: str = "zip") -> None:
    """Extract a ``kind`` archive (zip or tar.gz) so that `target` appears complete or not at all, after
    `check_members`. zipfile writes no member past its declared size and checks its CRC, and tarfile
    reads exactly the declared size of each entry, so data beyond what was checked is an error (one of
    ARCHIVE_READ_ERRORS), never a full disk."""
    if kind not in ARCHIVE_KINDS:
        raise ValueError(f"kind must be one of {ARCHIVE_KINDS}, got {kind!r}")
    if kind == "zip":
        with zipfile.ZipFile(archive) as bundle:
            check_members(archive, zip_members(bundle), target.parent)
            _land(archive, target, bundle.extractall)
        return
    with tarfile.open(archive, "r:gz") as bundle:
        check_members(archive, tar_members(bundle), target.parent)
        # the "data" filter (Python >= 3.11.4) refuses what check_members refused, a second line of defence
        options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        _land(archive, target, lambda staging: bundle.extractall(staging, **options))
