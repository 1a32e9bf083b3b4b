"""cyclegan-train end to end through the real entry point: the documented interface command, the
shipped sample, wandb offline files, the run summary, bad-config errors and the run-folder checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / ".venv" / "bin" / "cyclegan-train"
# tiny networks on 32x32 crops: a training iteration takes milliseconds
TINY = [
    "data.load_size=36",
    "data.crop_size=32",
    "model.generator.ngf=4",
    "model.generator.n_blocks=1",
    "model.discriminator.ndf=4",
    "trainer=cpu",
    "trainer.enable_progress_bar=false",
    "seed=0",
]


def make_unpaired_dataset(root: Path, n_a: int = 6, n_b: int = 5, size: int = 40) -> Path:
    """trainA/trainB (and testA/testB) of random RGB PNGs, decoded by the real data pipeline."""
    rng = np.random.default_rng(0)
    for split, count in (("trainA", n_a), ("trainB", n_b), ("testA", 2), ("testB", 2)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{split}_{index}.png")
    return root


def run_train(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """cyclegan-train's main() in this process (sys.argv as the console script gets it); exit status."""
    from cyclegan.cli.train import main

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["cyclegan-train", *args])
    try:
        main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        GlobalHydra.instance().clear()
    return 0


def run_train_subprocess(args: list[str], timeout: int = 240, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "HYDRA_FULL_ERROR": "1"}
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [str(TRAIN), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, **kwargs
    )


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_unpaired_dataset(tmp_path_factory.mktemp("data"))


def test_interface_command_trains_then_resumes(dataset: Path, tmp_path: Path) -> None:
    """The documented command, as a subprocess of the installed console script, then its resume."""
    out = tmp_path / "out"
    command = [
        "data=folder",
        f"data.root={dataset}",
        "data.load_size=36",
        "data.crop_size=32",
        "data.max_dataset_size=8",
        "model.generator.ngf=8",
        "model.generator.n_blocks=2",
        "model.discriminator.ndf=8",
        "trainer=cpu",
        "trainer.max_epochs=2",
        "logger=csv",
        "seed=0",
        f"hydra.run.dir={out}",
        "data.num_workers=0",
    ]
    first = run_train_subprocess(command)
    assert first.returncode == 0, first.stderr[-3000:]
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file()
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 2 * 2 * 6  # 2 optimizer steps per batch
    assert f"checkpoint:  {last}" in first.stdout
    assert (out / "csv" / "version_0" / "metrics.csv").is_file()

    resumed = run_train_subprocess(
        [*command[:-2], "trainer.max_epochs=3", f"hydra.run.dir={out}", f"ckpt_path={last}"]
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(last, weights_only=True)["global_step"] == 3 * 2 * 6
    # the first part's losses are kept next to the resumed part's
    assert (out / "csv" / "version_0" / "metrics.csv").is_file()
    assert (out / "csv" / "version_1" / "metrics.csv").is_file()


def test_shipped_sample_and_run_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(REPO)  # data.root is data/sample, relative to the working directory
    out = tmp_path / "run"
    args = [
        *TINY,
        "data=sample",
        "data.num_workers=0",
        "logger=csv",
        "trainer.max_steps=4",
        "trainer.limit_val_batches=0",
        "callbacks.image_grid.every_n_steps=1",
        f"hydra.run.dir={out}",
    ]
    assert run_train(args, monkeypatch) == 0
    printed = capsys.readouterr().out
    assert f"checkpoint:  {out / 'checkpoints' / 'last.ckpt'}" in printed
    assert f"image grids: {out / 'images'}" in printed
    assert f"CSVLogger: {out / 'csv' / 'version_0'}" in printed
    assert sorted(path.name for path in (out / "images").iterdir()) == ["step_000001.png", "step_000002.png"]


def test_multirun_sweep(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = [
        "-m",
        *TINY,
        "data=folder",
        f"data.root={dataset}",
        "data.num_workers=0",
        "logger=csv",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=0",
        "model.lr=1e-4,2e-4",
        f"hydra.sweep.dir={tmp_path}",
    ]
    assert run_train(args, monkeypatch) == 0
    for job in ("0", "1"):
        assert (tmp_path / job / "checkpoints" / "last.ckpt").is_file()
    lrs = [
        torch.load(tmp_path / job / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["lr"]
        for job in ("0", "1")
    ]
    assert lrs == [1e-4, 2e-4]
