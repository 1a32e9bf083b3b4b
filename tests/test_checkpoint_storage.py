"""Training checkpoints on fsspec locations: a run saves to and resumes from a ``memory://`` folder and a
``file://`` URL through the same plugin and policy as a local folder."""

from __future__ import annotations

import fsspec
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from cyclegan.callbacks import AtomicCheckpointIO, RunCheckpoint
from cyclegan.checkpoint_files import CheckpointError, find_latest_checkpoint, load_checkpoint_file
from cyclegan.model import CycleGAN

GEN = {"arch": "resnet", "n_blocks": 1, "ngf": 4}
DISC = {"arch": "basic", "ndf": 4}


def loader(count: int = 4) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = [
        {
            "A": torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1,
            "B": torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1,
        }
        for _ in range(count)
    ]
    return DataLoader(data, batch_size=None)


def fit(folder: str, max_steps: int, ckpt_path: str | None = None) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[RunCheckpoint(folder, every_n_train_steps=2, keep_last_k=2)],
        plugins=[AtomicCheckpointIO()],
    )
    torch.manual_seed(0)
    trainer.fit(CycleGAN(GEN, DISC, pool_size=2), loader(), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_a_run_checkpoints_to_a_url_and_resumes_from_it(scheme: str, tmp_path) -> None:
    folder = "memory://runs/url-test/checkpoints" if scheme == "memory" else f"file://{tmp_path}/checkpoints"
    fs, root = fsspec.core.url_to_fs(folder)
    fit(folder, max_steps=4)
    names = sorted(path.rpartition("/")[2] for path in fs.ls(root, detail=False))
    assert "last.ckpt" in names and not any(name.startswith(".tmp-") for name in names)
    latest = find_latest_checkpoint(folder)
    assert str(latest).endswith("last.ckpt")
    saved = load_checkpoint_file(latest)
    assert saved["global_step"] == 4

    resumed = fit(folder, max_steps=8, ckpt_path=str(latest))
    assert resumed.global_step == 8
    assert load_checkpoint_file(find_latest_checkpoint(folder))["global_step"] == 8
    if scheme == "memory":
        fs.rm(root, recursive=True)


def test_a_missing_url_checkpoint_is_one_clear_error() -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint file not found: memory://nowhere/last\.ckpt"):
        load_checkpoint_file("memory://nowhere/last.ckpt")


def test_epoch_checkpoints_every_n_epochs_and_always_at_the_final_epoch(tmp_path) -> None:
    """every_n_epochs=2 over 3 epochs of 4 iterations: epoch 1 (the 2nd) and epoch 2 (the final one)."""
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[RunCheckpoint(tmp_path, every_n_train_steps=1000, every_n_epochs=2, keep_last_k=5)],
        plugins=[AtomicCheckpointIO()],
    )
    torch.manual_seed(0)
    trainer.fit(CycleGAN(GEN, DISC, pool_size=2), loader())
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["epoch0001-step00000016.ckpt", "epoch0002-step00000024.ckpt", "last.ckpt"]
    with pytest.raises(ValueError, match="every_n_epochs must be >= 1"):
        RunCheckpoint(tmp_path, every_n_epochs=0)
