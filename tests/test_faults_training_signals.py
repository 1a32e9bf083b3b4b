"""Signals the way schedulers send them (issue 15, items 2 and 3): SIGTERM to the whole process group
(systemd, ``timeout``, SLURM's scancel) with the sample config's DataLoader workers, a worker dying while
the run shuts down, and what runs between the signal and the exit: nothing but the checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from test_resume_signal import READY
from test_train_cli import REPO, TINY, TRAIN

TESTS = Path(__file__).resolve().parent


class Training:
    """A cyclegan-train subprocess in its own session (setsid: its own process group, as a scheduler's
    job), its output collected line by line by a thread."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [str(TRAIN), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )
        self.pid = self.process.pid
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"never saw {text!r}; output:\n{self.output[-3000:]}")

    def finish(self, timeout: float = 240) -> int:
        """The exit status, once the process has ended (killed after ``timeout`` seconds)."""
        try:
            self.process.wait(timeout=timeout)
        finally:
            self.kill()
        self._reader.join(timeout=10)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()


class HookProbe(pl.Callback):
    """Appends ``HOOK GLOBAL_STEP`` to ``path`` for the hooks that must not run after a stop signal."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _record(self, hook: str, trainer: pl.Trainer) -> None:
        with open(self.path, "a") as file:
            file.write(f"{hook} {trainer.global_step}\n")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._record("train_batch", trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._record("validation_batch", trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._record("train_epoch_end", trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._record("train_end", trainer)


def start_on_sample(out: Path, probe: Path) -> Training:
    """cyclegan-train on the shipped sample with its default DataLoader workers (data=sample: 2)."""
    args = [
        *TINY,
        "data=sample",
        "logger=csv",
        "trainer.max_epochs=1000",
        "callbacks.image_grid.every_n_steps=100000",
        "callbacks.model_checkpoint.every_n_train_steps=1000000",
        "+callbacks.probe._target_=test_faults_training_signals.HookProbe",
        f"+callbacks.probe.path={probe}",
        f"hydra.run.dir={out}",
    ]
    training = Training(args, env={"PYTHONPATH": str(TESTS)})  # data.root data/sample: run in REPO
    training.wait_for(READY)
    return training


def children(pid: int) -> list[int]:
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


def wait_for_training(probe: Path, iterations: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe.is_file() and probe.read_text().count("train_batch") >= iterations:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {iterations} iterations in {timeout} s")


@pytest.fixture(scope="module")
def group_signalled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run stopped by ``kill -TERM -- -PGID`` while its data workers are running."""
    root = tmp_path_factory.mktemp("group")
    out, probe = root / "run", root / "hooks.txt"
    training = start_on_sample(out, probe)
    wait_for_training(probe, iterations=3)
    group = os.getpgid(training.pid)
    assert group == training.pid and len(children(training.pid)) >= 2  # the sample config's 2 workers
    subprocess.run(["kill", "-TERM", "--", f"-{group}"], check=True)
    returncode = training.finish()
    return {"returncode": returncode, "output": training.output, "out": out, "probe": probe}


def test_sigterm_to_the_process_group_saves_the_checkpoint(group_signalled: dict) -> None:
    output = group_signalled["output"]
    assert group_signalled["returncode"] == 128 + signal.SIGTERM, output[-3000:]
    assert "DataLoader worker" not in output and "Traceback" not in output, output[-3000:]
    last = group_signalled["out"] / "checkpoints" / "last.ckpt"
    assert f"SIGTERM received: saved {last}" in output
    step = torch.load(last, weights_only=True)["global_step"]
    assert step > 0 and step % 2 == 0  # an iteration boundary: G and D both stepped


def test_after_the_signal_checkpoint_nothing_else_runs(group_signalled: dict) -> None:
    """No validation (the sample has testA/testB), no epoch-end hooks (FID, scheduler steps, epoch
    checkpoint), no end-of-training image grid: the run exits once last.ckpt is written."""
    out = group_signalled["out"]
    stopped_at = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    hooks = [line.split() for line in group_signalled["probe"].read_text().splitlines()]
    after = [hook for hook, step in hooks if int(step) >= stopped_at]
    assert after == [], hooks  # the probe runs after SignalCheckpoint: not even the stopping batch's hook
    assert not (out / "images").exists()  # the end-of-training grid is not drawn either
    metrics = out / "csv" / "version_0" / "metrics.csv"
    assert not metrics.is_file() or "val/" not in metrics.read_text()
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == [
        f"epoch0000-step{stopped_at:08d}.ckpt",
        "last.ckpt",
    ]


def test_main_process_survives_a_worker_dying_during_shutdown(tmp_path: Path) -> None:
    out, probe = tmp_path / "run", tmp_path / "hooks.txt"
    training = start_on_sample(out, probe)
    wait_for_training(probe, iterations=3)
    (worker, *_) = children(training.pid)
    os.kill(training.pid, signal.SIGTERM)
    os.kill(worker, signal.SIGKILL)  # dies while the main process finishes its iteration
    returncode, output = training.finish(), training.output
    assert returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "killed by signal" not in output, output[-3000:]
    last = out / "checkpoints" / "last.ckpt"
    assert f"SIGTERM received: saved {last}" in output
    assert torch.load(last, weights_only=True)["global_step"] > 0
