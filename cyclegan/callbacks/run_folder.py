"""The run folder: checked before training and locked while a run uses it."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType

from cyclegan.checkpoint_files import TEMP_PREFIX

log = logging.getLogger(__name__)

LOCK_FILE = ".cyclegan-train.lock"


class RunFolderError(RuntimeError):
    """The run folder cannot hold this run's outputs (not writable, too little free space, in use)."""


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
        raise RunFolderError(
            f"run folder {folder} is not writable: {_why_not_writable(folder, error)}"
        ) from None
    free_mb = shutil.disk_usage(folder).free / 2**20
    if free_mb < min_free_mb:
        raise RunFolderError(
            f"run folder {folder} has {free_mb:.0f} MB free, less than min_free_disk_mb={min_free_mb:g}: "
            "free some space or choose another folder (hydra.run.dir=...)"
        )


def _why_not_writable(folder: Path, error: OSError) -> str:
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((path for path in (folder, *folder.parents) if path.exists()), folder)
        if not blocker.is_dir():
            return f"{blocker} is a file, not a folder"
    return error.strerror or str(error)


class RunFolderLock:
    """An exclusive lock on a run folder, so that two trainings never write into the same folder.

    ``flock`` on ``RUN/.cyclegan-train.lock``, which records the holder (pid, host, start time) for the
    error a second run gets. The kernel drops the lock when its process ends, however it ends: a lock
    file left by a killed run (its pid dead) is stale by construction and the next run takes it over.
    `release` (or leaving the ``with`` block) removes the file.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._file = None

    def __enter__(self) -> RunFolderLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise `RunFolderError` naming the live run that holds it."""
        while True:
            try:  # "a+": created if missing, the holder's record left as it is
                file = open(self.path, "a+")  # noqa: SIM115 (held open while the run lasts)
            except OSError as error:
                raise RunFolderError(
                    f"run folder {self.path.parent} is not writable: {error.strerror or error}"
                ) from None
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(file)
                file.close()
                raise RunFolderError(
                    f"run folder {self.path.parent} is in use by another training ({holder}); wait for it "
                    "to end or choose another folder (hydra.run.dir=...)"
                ) from None
            except OSError as error:  # a filesystem without locks: say so, and train unguarded
                file.close()
                log.warning(
                    "cannot lock run folder %s (%s): a second training in it would not be detected",
                    self.path.parent,
                    error.strerror or error,
                )
                return
            if _same_file(file, self.path):
                break
            file.close()  # its holder removed the file between our open and flock: lock the new one
        if file.tell():  # a record, but no lock: its process ended without releasing (killed, crashed)
            log.warning(
                "run folder %s: taking over the stale lock of %s (that process has ended)",
                self.path.parent,
                _read_holder(file),
            )
        file.seek(0)
        file.truncate()
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        file.write(json.dumps(record) + "\n")
        file.flush()
        self._file = file

    def release(self) -> None:
        """Remove the lock file and drop the lock (no-op when not held)."""
        if self._file is None:
            return
        self.path.unlink(missing_ok=True)  # while still locked: a waiting run then locks a new file
        self._file.close()
        self._file = None


def _same_file(file, path: Path) -> bool:
    try:
        found = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(file.fileno())
    return (found.st_dev, found.st_ino) == (opened.st_dev, opened.st_ino)


def _read_holder(file) -> str:
    file.seek(0)
    try:
        record = json.loads(file.read() or "{}")
        return f"cyclegan-train pid {record['pid']} on host {record['host']}, started {record['started']}"
    except (ValueError, KeyError, TypeError):
        return "a process that left no record"
