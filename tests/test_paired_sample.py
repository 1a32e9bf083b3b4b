"""The paired sample shipped in data/sample_pix2pix and the pix2pix configs: the sample is what its script
makes (byte for byte), holds the documented mapping and trains through `experiment=sample_pix2pix`; every
pix2pix experiment composes with the reference's direction and a dataset cyclegan-download knows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from PIL import Image, ImageFilter
from test_conf_compose import compose_train
from test_pix2pix_cli import make_aligned
from test_train_cli import run_train

from cyclegan.cli.train_config import build_checked
from cyclegan.data import PIX2PIX_DATASET_NAMES, PairedImageDataModule
from cyclegan.model import Pix2Pix

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample_pix2pix"
SMALL = ["model.generator.ngf=4", "model.discriminator.ndf=4"]
EXPERIMENTS = sorted(path.stem for path in (REPO / "conf" / "experiment" / "pix2pix").glob("*.yaml"))
# the reference's directions (its scripts and docs): label -> photo for facades and cityscapes
DIRECTIONS = {
    "facades": "BtoA",
    "cityscapes": "BtoA",
    "maps": "AtoB",
    "edges2shoes": "AtoB",
    "edges2handbags": "AtoB",
    "night2day": "AtoB",
}


def test_the_sample_is_small_aligned_and_regenerates_byte_identically(tmp_path):
    files = sorted(SAMPLE.rglob("*.jpg"))
    assert [len(list((SAMPLE / split).glob("*.jpg"))) for split in ("train", "test")] == [120, 24]
    assert sum(path.stat().st_size for path in files) < 600_000
    spec = importlib.util.spec_from_file_location(
        "make_sample_pix2pix", REPO / "data" / "make_sample_pix2pix.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.build(REPO / "data" / "sample", tmp_path) == len(files)
    for path in files:
        assert (tmp_path / path.relative_to(SAMPLE)).read_bytes() == path.read_bytes(), path.name


def test_a_is_the_blurred_grayscale_of_b():
    with Image.open(SAMPLE / "test" / "Garden_000.jpg") as pair:
        assert pair.size == (192, 96)
        image_a, image_b = pair.crop((0, 0, 96, 96)), pair.crop((96, 0, 192, 96))
    a = np.asarray(image_a, dtype=np.float64)
    assert np.abs(a[..., 0] - a[..., 2]).mean() < 2  # gray
    expected = np.asarray(image_b.convert("L").filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float64)
    assert np.abs(a.mean(axis=-1) - expected).mean() < 3  # JPEG rounding only
    b = np.asarray(image_b, dtype=np.float64)
    assert np.abs(b[..., 0] - b[..., 1]).mean() > 20  # colour


def test_sample_experiment_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # data.root is data/sample_pix2pix, relative to the working directory
    out = tmp_path / "run"
    args = [
        "experiment=sample_pix2pix",
        "data.num_workers=0",
        "logger=csv",
        "trainer.max_steps=4",
        "trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={out}",
    ]
    assert run_train(args, monkeypatch) == 0
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert any((out / "images").glob("step_*.png"))


@pytest.fixture(scope="module")
def aligned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_aligned(tmp_path_factory.mktemp("aligned"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_pix2pix_experiments_follow_the_reference(name, aligned, tmp_path):
    assert set(EXPERIMENTS) == set(DIRECTIONS)
    default = compose_train([f"experiment=pix2pix/{name}"], tmp_path)
    assert default.data.root == f"data/pix2pix/{name}"
    assert name == "cityscapes" or f"pix2pix/{name}" in PIX2PIX_DATASET_NAMES
    cfg = compose_train([f"experiment=pix2pix/{name}", f"data.root={aligned}", *SMALL], tmp_path)
    build_checked(cfg)
    assert cfg.data.direction == DIRECTIONS[name]
    assert (cfg.data.load_size, cfg.data.crop_size, cfg.data.batch_size) == (286, 256, 1)
    assert (cfg.model.n_epochs, cfg.model.n_epochs_decay, cfg.trainer.max_epochs) == (100, 100, 200)
    assert (cfg.model.generator.arch, cfg.model.generator.norm, cfg.model.generator.use_dropout) == (
        "unet_256",
        "batch",
        True,
    )
    assert isinstance(instantiate(cfg.data, _convert_="all"), PairedImageDataModule)
    model = instantiate(cfg.model, _convert_="all")
    assert (
        isinstance(model, Pix2Pix) and model.hparams.lambda_L1 == 100 and model.hparams.gan_mode == "vanilla"
    )


def test_crops_that_do_not_fit_the_unet_are_a_start_error(aligned, tmp_path):
    cfg = compose_train(
        ["model=pix2pix", "data=paired", f"data.root={aligned}", "data.crop_size=200"], tmp_path
    )
    with pytest.raises(ValueError, match=r"data\.crop_size=200: the unet_256 generator needs image sizes"):
        build_checked(cfg)
