"""Signals sent to a real cyclegan-train process. SIGTERM / SIGINT: it writes last.ckpt at the next
iteration boundary, exits with 128 + signal, and `ckpt_path=last` resumes from what it left. SIGUSR1
under SLURM: Lightning's auto-requeue checkpoint is written at an iteration boundary and the run is
resumed from it."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from test_train_cli import REPO, TINY, TRAIN, make_unpaired_dataset, run_train

READY = "SIGTERM/SIGINT will save a checkpoint"


def wait_for_line(process: subprocess.Popen, text: str, timeout: float) -> None:
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not selector.select(timeout=1.0):
            continue
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return
    process.kill()
    raise AssertionError(f"never saw {text!r}; output:\n{''.join(seen)[-3000:]}")


def train_args(dataset: Path, out: Path) -> list[str]:
    return [
        *TINY,
        "data=folder",
        f"data.root={dataset}",
        "data.num_workers=0",
        "logger=csv",
        "trainer.max_epochs=1000",
        "trainer.limit_val_batches=0",
        "callbacks.model_checkpoint.every_n_train_steps=1000000",
        f"hydra.run.dir={out}",
    ]


def start_training(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(TRAIN), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    wait_for_line(process, READY, timeout=120)
    time.sleep(1.0)  # let it train a few iterations
    return process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_checkpoint_and_resume_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals
) -> None:
    dataset = make_unpaired_dataset(tmp_path / "data")
    out = tmp_path / "run"
    args = train_args(dataset, out)
    process = start_training(args)
    try:
        process.send_signal(signum)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum, output[-3000:]
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file(), output[-3000:]
    assert f"{signum.name} received: saved {last}" in output
    assert "ckpt_path=last" in output  # the printed resume hint
    stopped_at = torch.load(last, weights_only=True)["global_step"]
    assert stopped_at > 0 and stopped_at % 2 == 0  # both optimizers stepped: an iteration boundary

    resumed = [*args, "ckpt_path=last", f"trainer.max_steps={stopped_at + 4}"]
    assert run_train(resumed, monkeypatch) == 0
    assert torch.load(last, weights_only=True)["global_step"] == stopped_at + 4


def test_slurm_requeue_checkpoint_is_taken_at_an_iteration_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Lightning's SLURMEnvironment(auto_requeue=True) handles SIGUSR1 (the launcher config's signal);
    the checkpoint it writes holds a whole number of iterations and a restart resumes from it."""
    dataset = make_unpaired_dataset(tmp_path / "data")
    out = tmp_path / "run"
    slurm = {
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_JOB_NAME": "cyclegan",
        "SLURM_JOB_ID": "4242",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
    }
    process = start_training(train_args(dataset, out), env=slurm)
    try:
        process.send_signal(signal.SIGUSR1)  # scontrol is missing here: the requeue itself fails, logged
        wait_for_line(process, "Handling auto-requeue signal", timeout=60)
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)  # what SLURM sends next
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    hpc = torch.load(out / "hpc_ckpt_1.ckpt", weights_only=True)
    assert hpc["global_step"] > 0 and hpc["global_step"] % 2 == 0
    batches = hpc["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]
    # saved in on_train_batch_end, like every step checkpoint: the batch is processed, and Lightning's
    # restart counts it as completed; a save from inside the signal handler could land mid-iteration
    assert batches["processed"] == hpc["global_step"] // 2 == batches["completed"] + 1

    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    # the requeued job runs the same command: Lightning resumes from the run folder's hpc checkpoint
    assert (
        run_train([*train_args(dataset, out), f"trainer.max_steps={hpc['global_step'] + 2}"], monkeypatch)
        == 0
    )
    assert f"Restored all states from the checkpoint at {out / 'hpc_ckpt_1.ckpt'}" in capsys.readouterr().out
    assert (
        torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        == hpc["global_step"] + 2
    )
