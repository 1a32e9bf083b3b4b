"""Optional FID/KID during training: every N epochs, translate the test split and log the scores."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from torch import nn

from cyclegan.inference.checkpoints import CYCLEGAN_GENERATORS, wrap
from cyclegan.inference.evaluation import directions_for, evaluate_direction
from cyclegan.inference.metrics import inception_extractor
from cyclegan.nn import batchnorm_mode


class FIDCallback(pl.Callback):
    """Logs ``fid/AtoB``, ``kid/AtoB`` (and BtoA) at the end of every ``every_n_epochs``-th training epoch.

    Scores compare ``G_A(root/{split}A)`` with ``root/{split}B`` (and ``G_B(...B)`` with ``...A``; an
    aligned ``root/{split}`` serves its halves); a model without a generator for a direction (pix2pix has
    only AtoB) is scored in the others. BatchNorm generators run in ``image`` mode, as inference does. Use
    ``max_images`` and ``resize`` to bound the cost. ``feature_extractor`` replaces the FID Inception
    network, else loaded from ``inception_weights`` or the download cache when fitting starts (a missing
    or refused weights file fails the run at start, not after the first epochs).
    """

    def __init__(
        self,
        data_root: str | Path,
        every_n_epochs: int = 10,
        direction: str = "both",
        split: str = "test",
        max_images: int | None = None,
        resize: int | None = None,
        batch_size: int = 8,
        feature_extractor: nn.Module | None = None,
        inception_weights: str | Path | None = None,
        download: bool = True,
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1, got {every_n_epochs}")
        self.data_root = Path(data_root)
        self.every_n_epochs = every_n_epochs
        self.directions = directions_for(direction)
        self.split = split
        self.max_images = max_images
        self.resize = resize
        self.batch_size = batch_size
        self.feature_extractor = feature_extractor
        self.inception_weights = inception_weights
        self.download = download

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.feature_extractor is None:
            self.feature_extractor = inception_extractor(self.inception_weights, download=self.download)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        assert self.feature_extractor is not None, "FIDCallback.setup was not called"
        extractor = self.feature_extractor.to(pl_module.device)
        generators = getattr(pl_module, "generator_names", CYCLEGAN_GENERATORS)
        for direction in [name for name in self.directions if name in generators]:
            network = getattr(pl_module, generators[direction])
            was_training = network.training
            network.eval()
            generator = wrap(network, network.spec)
            try:
                with batchnorm_mode(network, "image"):
                    scores, _ = evaluate_direction(
                        generator,
                        self.data_root,
                        direction,
                        extractor,
                        split=self.split,
                        batch_size=self.batch_size,
                        resize=self.resize,
                        max_images=self.max_images,
                    )
            finally:
                network.train(was_training)
            pl_module.log(f"fid/{direction}", scores.fid, sync_dist=False)
            pl_module.log(f"kid/{direction}", scores.kid_mean, sync_dist=False)
