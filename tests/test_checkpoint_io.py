"""Checkpoint files: normal permissions after an atomic write, one-line errors for damaged files."""

import os
import stat
from pathlib import Path

import pytest
import torch

from cyclegan.callbacks.checkpoint_io import CheckpointError, load_checkpoint_file, save_atomically


def test_atomic_write_gives_the_file_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        save_atomically({"state_dict": {"w": torch.ones(2)}}, tmp_path / "last.ckpt")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "last.ckpt").stat().st_mode)
    assert mode == 0o644
    assert torch.equal(load_checkpoint_file(tmp_path / "last.ckpt")["state_dict"]["w"], torch.ones(2))


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
