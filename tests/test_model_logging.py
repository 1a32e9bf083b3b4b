"""Image grids: PNGs in the run folder, TensorBoard and W&B (offline) images, the model's default logger."""

import csv

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from torch.utils.data import DataLoader

from cyclegan.callbacks.image_grid import ImageGridLogger, image_grid
from cyclegan.model import CycleGAN

GEN = {"arch": "resnet", "n_blocks": 1, "ngf": 4}
DISC = {"arch": "basic", "ndf": 4}
SIZE = 32


def loader(count):
    generator = torch.Generator().manual_seed(0)
    data = [
        {
            "A": torch.rand(1, 3, SIZE, SIZE, generator=generator) * 2 - 1,
            "B": torch.rand(1, 3, SIZE, SIZE, generator=generator) * 2 - 1,
        }
        for _ in range(count)
    ]
    return DataLoader(data, batch_size=None)


def fit(model, logger, callbacks=(), iterations=4, root=None):
    run = pl.Trainer(
        accelerator="cpu",
        max_steps=2 * iterations,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        default_root_dir=root,
        log_every_n_steps=1,
    )
    run.fit(model, loader(iterations))
    return run


def grid_size(columns, rows):
    """make_grid with padding 2: (width, height) of the PNG."""
    return (columns * SIZE + (columns + 1) * 2, rows * SIZE + (rows + 1) * 2)


def test_image_grid_maps_minus_one_to_black_and_expands_grayscale():
    visuals = {
        "real_A": torch.full((1, 1, 4, 4), -1.0),
        "fake_B": torch.full((1, 3, 4, 4), 1.0),
        "rec_A": torch.zeros(1, 1, 4, 4),
        "real_B": torch.full((1, 3, 8, 8), 1.0),  # another size: resized to the first tile's
        "fake_A": torch.full((1, 1, 4, 4), -1.0),
        "rec_B": torch.zeros(1, 3, 4, 4),
    }
    grid = image_grid(visuals, CycleGAN.grid_rows)
    assert grid.shape == (3, 2 * 4 + 3 * 2, 3 * 4 + 4 * 2)
    tile = lambda row, col: grid[:, 2 + row * 6 : 6 + row * 6, 2 + col * 6 : 6 + col * 6]
    assert torch.equal(tile(0, 0), torch.zeros(3, 4, 4))
    assert torch.equal(tile(0, 1), torch.ones(3, 4, 4))
    assert torch.equal(tile(0, 2), torch.full((3, 4, 4), 0.5))
    assert torch.equal(tile(1, 0), torch.ones(3, 4, 4))


def test_grid_logger_writes_pngs_to_the_run_folder(tmp_path):
    model = CycleGAN(GEN, DISC)
    logger = CSVLogger(tmp_path)
    fit(model, logger, callbacks=[ImageGridLogger(every_n_steps=2)])
    images = sorted((tmp_path / "lightning_logs" / "version_0" / "images").iterdir())
    assert [path.name for path in images] == ["step_000002.png", "step_000004.png"]
    # Batch of one: a row per direction; columns real, fake, reconstructed, identity.
    assert Image.open(images[0]).size == grid_size(4, 2)


def test_identity_off_gives_three_columns_and_no_logger_means_default_root_dir(tmp_path):
    model = CycleGAN(GEN, DISC, lambda_identity=0.0)
    fit(model, logger=False, callbacks=[ImageGridLogger(every_n_steps=4)], root=tmp_path)
    (png,) = (tmp_path / "images").iterdir()
    assert png.name == "step_000004.png"
    assert Image.open(png).size == grid_size(3, 2)


def test_a_grid_logger_with_a_save_dir_writes_only_there(tmp_path):
    model = CycleGAN(GEN, DISC)
    fit(
        model,
        logger=False,
        callbacks=[ImageGridLogger(every_n_steps=3, save_dir=tmp_path / "grids")],
        root=tmp_path / "root",
    )
    # every third iteration, and the last one (4) when training ends
    assert sorted(path.name for path in (tmp_path / "grids").iterdir()) == [
        "step_000003.png",
        "step_000004.png",
    ]
    assert not (tmp_path / "root" / "images").exists()


def test_without_a_grid_logger_no_images_are_written(tmp_path):
    fit(CycleGAN(GEN, DISC), logger=False, iterations=1, root=tmp_path)
    assert not (tmp_path / "images").exists()


def test_tensorboard_receives_the_grid(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    fit(CycleGAN(GEN, DISC), logger, callbacks=[ImageGridLogger(every_n_steps=2)])
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert "train/images" in events.Tags()["images"]
    logged = events.Images("train/images")
    assert [event.step for event in logged] == [2, 4]
    assert (logged[0].width, logged[0].height) == grid_size(4, 2)
    assert "train/G_step" in events.Tags()["scalars"]


def test_wandb_offline_receives_the_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="cyclegan-test")
    try:
        fit(CycleGAN(GEN, DISC), logger, callbacks=[ImageGridLogger(every_n_steps=4)])
    finally:
        logger.experiment.finish()
    media = list(tmp_path.glob("wandb/offline-run-*/files/media/images/train/images_*.png"))
    assert len(media) == 1
    assert Image.open(media[0]).size == grid_size(4, 2)


@pytest.mark.parametrize("bad", [0, -3, 1.5])
def test_invalid_every_n_steps(bad):
    with pytest.raises(ValueError, match="every_n_steps"):
        ImageGridLogger(every_n_steps=bad)


class RecordLoggedSteps(CycleGAN):
    """Records the batch index of every iteration that logs its generator loss."""

    def on_fit_start(self):
        self.logged_batches = []

    def log_dict(self, dictionary, *args, **kwargs):
        if {"train/G", "train/G_step"} & set(dictionary):  # the loss name before and after this change
            self.logged_batches.append(self.trainer.fit_loop.epoch_loop.batch_idx)
        super().log_dict(dictionary, *args, **kwargs)


def test_iteration_losses_are_logged_at_logging_steps_and_epoch_means_cover_every_iteration(tmp_path):
    every_third = RecordLoggedSteps(GEN, DISC)
    run = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=CSVLogger(tmp_path, name="every_third"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=3,
    )
    run.fit(every_third, loader(6))
    assert every_third.logged_batches == [2, 5]  # iterations 3 and 6: where Lightning writes step metrics

    every_one = RecordLoggedSteps(GEN, DISC)
    fit(every_one, CSVLogger(tmp_path, name="every_one"), iterations=6)
    with open(tmp_path / "every_one" / "version_0" / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    steps = [float(row["train/G_step"]) for row in rows if row["train/G_step"]]
    (epoch_mean,) = [float(row["train/G_epoch"]) for row in rows if row["train/G_epoch"]]
    assert len(steps) == 6 and epoch_mean == pytest.approx(sum(steps) / 6, rel=1e-6)
