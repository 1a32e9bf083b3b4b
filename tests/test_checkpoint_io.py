"""Checkpoint files: normal permissions after an atomic write, a disk that fills up mid-write, one-line
errors for damaged files."""

import errno
import os
import stat
from pathlib import Path

import pytest
import torch

from cyclegan.checkpoint_files import CheckpointError, load_checkpoint_file, save_atomically


def test_atomic_write_gives_the_file_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        save_atomically({"state_dict": {"w": torch.ones(2)}}, tmp_path / "last.ckpt")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "last.ckpt").stat().st_mode)
    assert mode == 0o644
    assert torch.equal(load_checkpoint_file(tmp_path / "last.ckpt")["state_dict"]["w"], torch.ones(2))


class FillingDisk:
    """A real file that takes ``room`` bytes and then fails as a full disk does: what fits is written,
    the rest raises OSError(ENOSPC)."""

    def __init__(self, file, room: int) -> None:
        self.file = file
        self.room = room
        self.written = 0

    def write(self, data) -> int:
        fits = bytes(data)[: self.room - self.written]
        self.written += self.file.write(fits)
        if len(fits) < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return len(fits)

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.file.close()


def test_a_disk_that_fills_up_during_the_write_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    save_atomically({"step": torch.tensor(1)}, path)
    old_bytes = path.read_bytes()
    disks = []
    real_fdopen = os.fdopen

    def fdopen(fd, *args, **kwargs):
        disks.append(FillingDisk(real_fdopen(fd, *args, **kwargs), room=64 * 1024))
        return disks[-1]

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(CheckpointError):
        save_atomically({"step": torch.tensor(2), "weights": torch.randn(256, 256)}, path)  # 256 KiB
    assert len(disks) == 1 and disks[0].written == 64 * 1024  # it failed midway through torch.save
    assert path.read_bytes() == old_bytes
    assert load_checkpoint_file(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


@pytest.mark.parametrize("content", [b"\x00" * 64, os.urandom(4096), b"PK\x03\x04garbage"])
def test_damaged_files_give_one_clear_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint_file(path)
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message
    assert "PytorchStreamReader" not in message


def test_truncated_checkpoint_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    save_atomically({"state_dict": {"w": torch.randn(256, 256)}}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint_file(path)
