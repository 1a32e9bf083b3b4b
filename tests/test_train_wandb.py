"""The default logger, wandb, offline: the run lands under the run folder with the resolved config, the
losses, the image grids and the checkpoint artifact; without credentials it never prompts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from test_train_cli import TINY, make_unpaired_dataset, run_train

from cyclegan.cli.wandb_setup import configure_wandb


def wait_for_record(path: Path, marker: bytes, timeout_s: float = 60.0) -> bytes:
    """The offline run file once wandb's service process has written ``marker`` (it writes asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        data = path.read_bytes()
        if marker in data or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


def test_wandb_offline_run_records_config_losses_images_and_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    dataset = make_unpaired_dataset(tmp_path / "data")
    out = tmp_path / "run"
    args = [
        *TINY,
        "data=folder",
        f"data.root={dataset}",
        "data.num_workers=0",
        "logger=wandb",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=0",
        "trainer.log_every_n_steps=1",
        "callbacks.image_grid.every_n_steps=2",
        f"hydra.run.dir={out}",
    ]
    assert run_train(args, monkeypatch) == 0
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    images = list((runs[0] / "files" / "media" / "images").rglob("*.png"))
    assert len(images) == 3  # the grids of iterations 2, 4 and 6
    # the offline run's record (uploaded by `wandb sync`): config, losses and the checkpoint artifact
    log = wait_for_record(runs[0] / f"run-{runs[0].name.rsplit('-', 1)[-1]}.wandb", b"last.ckpt")
    assert str(dataset).encode() in log and b"lambda_identity" in log  # the resolved config
    assert b"train/G_step" in log  # per-iteration losses
    assert b"model-" in log and b"last.ckpt" in log  # log_model: the checkpoint artifact


def test_no_credentials_means_offline_without_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    logger_cfg = OmegaConf.create({"offline": False, "id": None})
    configure_wandb(logger_cfg, tmp_path, resuming=False)
    assert os.environ["WANDB_MODE"] == "offline"


def test_resume_reuses_the_wandb_run_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    (tmp_path / "wandb" / "offline-run-20260101_000000-abc123xy").mkdir(parents=True)
    logger_cfg = OmegaConf.create({"offline": False, "id": None})
    configure_wandb(logger_cfg, tmp_path, resuming=True)
    assert logger_cfg.id == "abc123xy" and logger_cfg.resume == "allow"
