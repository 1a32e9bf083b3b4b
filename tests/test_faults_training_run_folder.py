"""The run folder under faults (issue 15, items 4, 11 and 19): two trainings in one folder, a folder that
cannot be created or written (checked before Hydra writes into it), and a disk that fills up while a
checkpoint is being written."""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from test_faults_training_signals import Training
from test_resume_signal import READY
from test_train_cli import REPO, TINY, TRAIN, make_unpaired_dataset, run_train

from cyclegan import checkpoint_files
from cyclegan.callbacks.run_folder import LOCK_FILE
from cyclegan.checkpoint_files import CheckpointError, save_atomically


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_unpaired_dataset(tmp_path_factory.mktemp("data"))


def train_args(dataset: Path, out: Path, *extra: str) -> list[str]:
    return [
        *TINY,
        "data=folder",
        f"data.root={dataset}",
        "data.num_workers=0",
        "logger=csv",
        "trainer.limit_val_batches=0",
        f"hydra.run.dir={out}",
        *extra,
    ]


def start(args: list[str]) -> Training:
    training = Training(args)
    training.wait_for(READY)
    return training


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TRAIN), *args], capture_output=True, text=True, timeout=300, cwd=REPO, **kwargs
    )


# --------------------------------------------------------------------------- item 4: one run per folder
def test_a_second_live_run_in_the_same_folder_is_refused(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = start(train_args(dataset, out, "trainer.max_epochs=1000", "seed=1"))
    try:
        second = run(train_args(dataset, out, "trainer.max_steps=4", "seed=2"))
        first_still_training = first.process.poll() is None
        # refused before Hydra wrote into the folder: the config on record is still the first run's
        overrides = (out / ".hydra" / "overrides.yaml").read_text()
    finally:
        os.kill(first.pid, signal.SIGTERM)
        returncode = first.finish()
    assert second.returncode == 2, second.stderr[-3000:]
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith(f"cyclegan-train: error: run folder {out} is in use by another training")
    assert f"pid {first.pid} on host" in line
    assert first_still_training and "seed=1" in overrides and "seed=2" not in overrides
    assert returncode == 128 + signal.SIGTERM, first.output[-3000:]
    assert not (out / LOCK_FILE).exists()  # released on exit
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] > 0


def test_the_lock_of_a_killed_run_is_taken_over(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    killed = start(train_args(dataset, out, "trainer.max_epochs=1000"))
    killed.kill()  # SIGKILL to its process group: no chance to release anything
    assert f'"pid": {killed.pid}' in (out / LOCK_FILE).read_text()  # its record is left behind
    assert run_train(train_args(dataset, out, "trainer.max_steps=2"), monkeypatch) == 0
    printed = capsys.readouterr()
    assert f"taking over the stale lock of cyclegan-train pid {killed.pid}" in printed.out + printed.err
    assert not (out / LOCK_FILE).exists()


# ------------------------------------------------------------------ item 11: a folder that cannot be used
def test_a_run_folder_under_a_regular_file_is_one_line(dataset: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run(train_args(dataset, blocker / "run", "trainer.max_steps=2"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"cyclegan-train: error: run folder {blocker / 'run'} is not writable: {blocker} is a file, "
        "not a folder"
    ]


def _without_write_permission() -> list[str]:
    """Command prefix under which permission bits apply (root ignores them unless it drops the
    capabilities that override them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


@pytest.mark.parametrize("where", ["the folder", "its parent"])
def test_a_read_only_run_folder_is_one_line(dataset: Path, tmp_path: Path, where: str) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    out = read_only if where == "the folder" else read_only / "run"
    command = [*_without_write_permission(), str(TRAIN), *train_args(dataset, out, "trainer.max_steps=2")]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    finally:
        read_only.chmod(0o755)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"cyclegan-train: error: run folder {out} is not writable: Permission denied"
    ]


# ---------------------------------------------------------------- item 19: the disk fills up mid-write
class FillsUp(io.RawIOBase):
    """A real file whose device is full after ``capacity`` bytes: writes then raise ENOSPC."""

    def __init__(self, file: io.BufferedWriter, capacity: int) -> None:
        self.file = file
        self.room = capacity

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def fileno(self) -> int:
        return self.file.fileno()

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        super().close()
        self.file.close()


def test_disk_full_while_saving_says_so_and_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "last.ckpt"
    save_atomically({"step": 1, "weights": torch.ones(4)}, target)
    real_fdopen = os.fdopen
    with monkeypatch.context() as full:  # the temporary file lands on a device with 4 KB left
        full.setattr(checkpoint_files.os, "fdopen", lambda fd, mode: FillsUp(real_fdopen(fd, mode), 4096))
        with pytest.raises(CheckpointError) as refused:
            save_atomically({"step": 2, "weights": torch.zeros(2**20)}, target)
    message = str(refused.value)
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    assert message.startswith(f"cannot write checkpoint {target}: no space left on device (")
    assert f"{free_mb:.0f} MB free in {tmp_path}, the checkpoint needs about 4 MB" in message
    assert "enforce fail" not in message and "\n" not in message
    assert torch.load(target, weights_only=True)["step"] == 1  # the previous checkpoint is intact
    assert [path.name for path in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def _tiny_filesystem_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True
    )
    return probe.returncode == 0


def test_training_on_a_full_filesystem_exits_with_one_line(dataset: Path, tmp_path: Path) -> None:
    """A real full disk: the run folder on a 300 KB tmpfs (in a user and mount namespace), which holds
    Hydra's files and the logs but not a checkpoint."""
    if not _tiny_filesystem_available():
        pytest.skip("no unprivileged user and mount namespaces here (unshare -rm)")
    mount = tmp_path / "tiny"
    mount.mkdir()
    out = mount / "run"
    args = train_args(dataset, out, "trainer.max_steps=2", "min_free_disk_mb=0")
    script = f'mount -t tmpfs -o size=300k tmpfs "{mount}" && exec "$0" "$@"'
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, str(TRAIN), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "cyclegan-train: error: cannot write checkpoint" in errors[0], errors
    assert "no space left on device" in errors[0] and "MB free in" in errors[0]
