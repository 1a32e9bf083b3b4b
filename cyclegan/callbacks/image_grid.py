"""Callback that writes grids of a GAN model's images (real, translated, reconstructed, ...) during
training; each model names its grid's rows (``grid_rows``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torchvision.utils import make_grid, save_image


def image_grid(
    visuals: Mapping[str, torch.Tensor], rows: Sequence[Sequence[str]], max_images: int = 4
) -> torch.Tensor:
    """A (3, H, W) float grid in [0, 1] from [-1, 1] image batches: per sample one grid row per entry of
    ``rows`` (visual names, e.g. CycleGAN's A->B and B->A rows), names missing from ``visuals`` left out.

    Grayscale tiles are repeated to RGB and every tile is resized to the first one's size, so domains of
    different channel counts or sizes fit in one grid.
    """
    columns = [name for name in rows[0] if name in visuals]
    rows = [[name for name in row if name in visuals] for row in rows]
    first = visuals[columns[0]]
    height, width = first.shape[-2:]
    count = min(max_images, first.shape[0])
    tiles = []
    for index in range(count):
        for row in rows:
            for name in row:
                tile = visuals[name][index : index + 1].detach().float().cpu()
                tile = tile.expand(-1, 3, -1, -1) if tile.shape[1] == 1 else tile[:, :3]
                if tile.shape[-2:] != (height, width):
                    tile = F.interpolate(tile, size=(height, width), mode="bilinear", align_corners=False)
                tiles.append(((tile[0] + 1.0) / 2.0).clamp(0.0, 1.0))
    return make_grid(tiles, nrow=len(columns), padding=2, pad_value=1.0)


class ImageGridLogger(pl.Callback):
    """Every ``every_n_steps`` training iterations (batches), on global rank 0: save the iteration's image
    grid as ``<save_dir>/step_<iteration>.png`` (default ``save_dir``: ``<trainer.log_dir or
    default_root_dir>/images``) and send it to W&B (``log_image``) and TensorBoard (``add_image``)
    loggers; other loggers get nothing. Needs a model with ``grid_rows`` whose ``training_step`` returns
    ``{"visuals": {...}}`` (every `cyclegan.model.GANModule`).

    When training ends, the last iteration's grid is logged too (unless it was just logged), so every
    run leaves a picture, also one shorter than ``every_n_steps`` and a ``fast_dev_run``.
    """

    def __init__(
        self, every_n_steps: int = 200, save_dir: str | Path | None = None, max_images: int = 4
    ) -> None:
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive integer, got {every_n_steps!r}")
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        self.every_n_steps = every_n_steps
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.max_images = max_images
        self._resolved_dir: Path | None = None
        self._unlogged: tuple[int, Mapping[str, torch.Tensor]] | None = None  # last iteration, if not logged

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # trainer.log_dir broadcasts from rank 0, so it is read here, where every process takes part.
        if self.save_dir is not None:
            self._resolved_dir = self.save_dir
        else:
            self._resolved_dir = Path(trainer.log_dir or trainer.default_root_dir) / "images"

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not trainer.is_global_zero:
            return
        visuals = outputs.get("visuals") if isinstance(outputs, Mapping) else None
        if not visuals:
            return
        iteration = trainer.fit_loop.total_batch_idx + 1
        if iteration % self.every_n_steps:
            self._unlogged = (iteration, visuals)
            return
        self._unlogged = None
        self._log_grid(trainer, iteration, visuals)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._unlogged is not None:
            self._log_grid(trainer, *self._unlogged)
            self._unlogged = None

    def _log_grid(self, trainer: pl.Trainer, iteration: int, visuals: Mapping[str, torch.Tensor]) -> None:
        grid = image_grid(visuals, trainer.lightning_module.grid_rows, self.max_images)
        assert self._resolved_dir is not None, "ImageGridLogger.setup was not called"
        self._resolved_dir.mkdir(parents=True, exist_ok=True)
        save_image(grid, self._resolved_dir / f"step_{iteration:06d}.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                pixels = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
                logger.log_image(key="train/images", images=[pixels], step=trainer.global_step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("train/images", grid, global_step=iteration)
