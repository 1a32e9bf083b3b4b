"""Loading generators from Lightning checkpoints by the model record they carry (``cyclegan_model``):
CUT's one generator, the dataset direction it was trained in, and older CycleGAN checkpoints without it."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from cyclegan.checkpoint_files import CheckpointError
from cyclegan.inference import open_generator
from cyclegan.model import CUT, MODEL_KEY, CycleGAN

GEN = {"arch": "resnet", "n_blocks": 1, "ngf": 4}
DISC = {"arch": "basic", "ndf": 4}


def saved(model: pl.LightningModule, path: Path) -> Path:
    """``model`` after one real training iteration, saved by the Trainer."""
    data = [{"A": torch.rand(1, 3, 32, 32) * 2 - 1, "B": torch.rand(1, 3, 32, 32) * 2 - 1}]
    trainer = pl.Trainer(
        accelerator="cpu", fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, DataLoader(data, batch_size=None))
    trainer.save_checkpoint(path)
    return path


def rewritten(source: Path, path: Path, **changes) -> Path:
    """A copy of the checkpoint ``source`` with top-level keys set (None: removed)."""
    checkpoint = torch.load(source, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del checkpoint[key]
        else:
            checkpoint[key] = value
    torch.save(checkpoint, path)
    return path


def same_weights(generator: torch.nn.Module, network: torch.nn.Module) -> bool:
    loaded = generator.generator.state_dict()  # inside the pad/crop wrapper
    return all(torch.equal(loaded[key], value) for key, value in network.state_dict().items())


def test_cut_trained_with_btoa_data_translates_the_b_folders_to_a_only(tmp_path: Path) -> None:
    model = CUT(GEN, DISC, nce_layers=[0, 4], num_patches=8)
    trained = saved(model, tmp_path / "cut.ckpt")
    path = rewritten(trained, tmp_path / "btoa.ckpt", datamodule_hyper_parameters={"direction": "BtoA"})
    loaded = open_generator(path, "BtoA")
    assert same_weights(loaded.module, model.netG)
    with pytest.raises(CheckpointError, match=r"CUT.* translates BtoA only"):
        open_generator(path, "AtoB")


def test_cyclegan_checkpoints_without_the_model_record_load_both_generators(tmp_path: Path) -> None:
    model = CycleGAN(GEN, DISC, pool_size=1)
    with_record = saved(model, tmp_path / "new.ckpt")
    assert torch.load(with_record, weights_only=True)[MODEL_KEY]["generators"] == {
        "AtoB": "netG_A",
        "BtoA": "netG_B",
    }
    older = rewritten(with_record, tmp_path / "old.ckpt", **{MODEL_KEY: None})
    for path in (with_record, older):
        atob, btoa = open_generator(path, "AtoB"), open_generator(path, "BtoA")
        assert same_weights(atob.module, model.netG_A) and same_weights(btoa.module, model.netG_B)
