"""Shared material for the inference, export and eval tests (no tests here).

The expensive parts (a real Trainer run producing a Lightning checkpoint) are built once per process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image
from torch import nn

from cyclegan.callbacks.fid import FIDCallback
from cyclegan.data import UnpairedImageDataModule
from cyclegan.model import CycleGAN
from cyclegan.nn import build_generator

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
TINY_GENERATOR = {"arch": "resnet", "n_blocks": 1, "ngf": 4}
_TRAINED: dict[str, object] = {}


class TinyFeatures(nn.Module):
    """A small fixed feature extractor: uint8 RGB (N, 3, H, W) -> 4x4 average colours (N, 48) in [0, 1]."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        return nn.functional.adaptive_avg_pool2d(images.float() / 255.0, 4).flatten(1)


def random_image(height: int, width: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A noisy gradient image (so that translations differ from pixel to pixel)."""
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    ramp = np.linspace(0, 200, width)[None, :, None] + np.linspace(0, 55, height)[:, None, None]
    values = np.clip(ramp + rng.normal(0, 20, (height, width, channels)), 0, 255).astype(np.uint8)
    return Image.fromarray(values[..., 0] if mode == "L" else values, mode)


def write_domain(folder: Path, count: int, size: int, shift: int, seed: int = 0) -> None:
    """``count`` RGB PNGs of ``size`` x ``size`` whose brightness is offset by ``shift``."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = np.asarray(random_image(size, size, seed=seed + index), dtype=np.int16) + shift
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{index:02d}.png")


def reference_generator_file(
    path: Path, *, input_nc: int = 3, output_nc: int = 3, seed: int = 0
) -> nn.Module:
    """Save a random tiny ResNet generator in the reference key layout; returns the reference-layout net."""
    torch.manual_seed(seed)
    net = build_generator(**TINY_GENERATOR, layout="reference", input_nc=input_nc, output_nc=output_nc)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net.eval()


def run_padded(net: nn.Module, image: torch.Tensor, multiple: int = 4) -> torch.Tensor:
    """Independent full-resolution run: reflect-pad bottom/right to ``multiple``, run, crop."""
    height, width = image.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    padded = nn.functional.pad(image, (0, pad_w, 0, pad_h), mode="reflect")
    with torch.no_grad():
        return net(padded)[..., :height, :width]


def trained_run(tmp_path_factory) -> dict[str, object]:
    """A real tiny CycleGAN Trainer run with the FID callback: checkpoint path, data root, metrics."""
    if not _TRAINED:
        root = tmp_path_factory.mktemp("trained")
        data = root / "data"
        for split, count, shift in (
            ("trainA", 3, 40),
            ("trainB", 3, -40),
            ("testA", 4, 40),
            ("testB", 4, -40),
        ):
            write_domain(data / split, count, 40, shift, seed=count + abs(shift))
        pl.seed_everything(0)
        model = CycleGAN(TINY_GENERATOR, {"arch": "basic", "ndf": 4}, pool_size=2)
        datamodule = UnpairedImageDataModule(
            str(data),
            load_size=36,
            crop_size=32,
            batch_size=1,
            num_workers=0,
            seed=0,
            persistent_workers=False,
        )
        fid = FIDCallback(
            data, every_n_epochs=1, feature_extractor=TinyFeatures(), max_images=4, batch_size=2
        )
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=1,
            limit_train_batches=2,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[fid],
            default_root_dir=root,
        )
        trainer.fit(model, datamodule=datamodule)
        checkpoint = root / "tiny.ckpt"
        trainer.save_checkpoint(checkpoint)
        _TRAINED.update(checkpoint=checkpoint, data=data, metrics=dict(trainer.callback_metrics))
    return _TRAINED


def compose_config(name: str, overrides: list[str]):
    """Compose ``conf/{name}.yaml`` with Hydra, as the console script would."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name=name, overrides=overrides)
