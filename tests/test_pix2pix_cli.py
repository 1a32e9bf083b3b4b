"""pix2pix end to end on real files: `cyclegan-train model=pix2pix data=paired` on the aligned layout and on
paired folders, then the checkpoint through cyclegan-translate (the console script), cyclegan-export
(ONNX, TorchScript, safetensors) and cyclegan-eval; bad paired roots fail the start checks in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_inference_support import TinyFeatures, compose_config, random_image
from test_train_cli import run_train

from cyclegan.checkpoint_files import CheckpointError
from cyclegan.cli.evaluate import run_eval
from cyclegan.cli.export import run_export
from cyclegan.cli.translate import run_translate
from cyclegan.inference import load_generator, open_generator
from cyclegan.inference.evaluation import SplitSource, image_batches, split_folder
from cyclegan.inference.images import pil_to_network

# tiny networks on 32x32 crops: unet with 5 downsamplings (sizes padded to multiples of 32)
TINY_PIX2PIX = [
    "model=pix2pix",
    "data=paired",
    "data.load_size=36",
    "data.crop_size=32",
    "data.num_workers=0",
    "model.generator.arch=unet",
    "model.generator.num_downs=5",
    "model.generator.ngf=4",
    "model.discriminator.ndf=4",
    "trainer=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=1",
    "trainer.check_val_every_n_epoch=1",
    "logger=csv",
    "seed=0",
]


def photo(height: int, width: int, seed: int) -> np.ndarray:
    return np.asarray(random_image(height, width, seed=seed))


def make_aligned(root: Path, count: int = 4, size: int = 40) -> Path:
    """ROOT/train and ROOT/test of JPEG pairs: A the photo, B its negative."""
    for split, number in (("train", count), ("test", 2)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for index in range(number):
            image_a = photo(size, size, seed=index + 10 * len(split))
            pair = np.concatenate([image_a, 255 - image_a], axis=1)
            Image.fromarray(pair).save(root / split / f"{index}.jpg", quality=95)
    return root


def make_folders(root: Path, count: int = 3, size: int = 40) -> Path:
    """ROOT/{train,test}{A,B}/NAME.png pairs (A the photo, B its negative) and one unmatched file."""
    for split, number in (("train", count), ("test", 2)):
        for index in range(number):
            image_a = photo(size, size, seed=index)
            for letter, pixels in (("A", image_a), ("B", 255 - image_a)):
                (root / f"{split}{letter}").mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / f"{split}{letter}" / f"{index}.png")
    Image.fromarray(photo(size, size, seed=99)).save(root / "trainA" / "lonely.png")
    return root


def train(root: Path, out: Path, *extra: str) -> Path:
    """cyclegan-train's main() (sys.argv as the console script gets it); returns last.ckpt."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        status = run_train([*TINY_PIX2PIX, f"data.root={root}", f"hydra.run.dir={out}", *extra], monkeypatch)
    assert status == 0
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def aligned_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pix2pix")
    data = make_aligned(root / "data")
    return {"data": data, "checkpoint": train(data, root / "run"), "run": root / "run"}


def test_training_on_the_aligned_layout_writes_a_pix2pix_checkpoint_grids_and_validation(aligned_run):
    checkpoint = torch.load(aligned_run["checkpoint"], weights_only=True)
    assert checkpoint["cyclegan_model"] == {"class": "Pix2Pix", "generators": {"AtoB": "netG"}}
    assert checkpoint["datamodule_hyper_parameters"]["format"] == "auto"
    assert checkpoint["global_step"] == 2 * 4  # two optimizer steps per pair
    assert {key.split(".")[0] for key in checkpoint["state_dict"]} == {"netD", "netG"}
    metrics = (aligned_run["run"] / "csv" / "version_0" / "metrics.csv").read_text()
    assert "val/L1" in metrics and "train/G_L1_epoch" in metrics
    assert any((aligned_run["run"] / "images").glob("step_*.png"))


def test_translate_console_script_keeps_names_and_sizes(aligned_run, tmp_path):
    """The documented interface: single A images of any size in, same names and sizes out."""
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    random_image(40, 52, seed=1).save(source / "street.jpg")
    random_image(33, 47, "L", seed=2).save(source / "sub" / "gray.png")
    script = Path(sys.executable).with_name("cyclegan-translate")
    base = [str(script), f"checkpoint={aligned_run['checkpoint']}", f"input={source}", "progress=false"]
    run = subprocess.run(
        [*base, f"output={tmp_path / 'out'}", "direction=AtoB"], capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stderr
    assert "AtoB: translated 2 image(s), skipped 0" in run.stdout
    with Image.open(tmp_path / "out" / "street.jpg") as image:
        assert image.size == (52, 40)
    with Image.open(tmp_path / "out" / "sub" / "gray.png") as image:
        assert image.size == (47, 33)

    refused = subprocess.run(
        [*base, f"output={tmp_path / 'back'}", "direction=BtoA"], capture_output=True, text=True, timeout=240
    )
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "Pix2Pix, trained with data.direction=AtoB) translates AtoB only, not BtoA" in line
    assert not (tmp_path / "back").exists()


def test_batchnorm_modes_through_translate(aligned_run, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    random_image(32, 32, seed=4).save(source / "x.png")
    outputs = {}
    for mode in ("image", "running"):
        cfg = compose_config(
            "translate",
            [
                f"checkpoint={aligned_run['checkpoint']}",
                f"input={source}",
                f"output={tmp_path / mode}",
                f"batchnorm={mode}",
                "progress=false",
            ],
        )
        run_translate(cfg)
        outputs[mode] = np.asarray(Image.open(tmp_path / mode / "x.png"), dtype=np.int16)
    assert np.abs(outputs["image"] - outputs["running"]).max() > 0


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors"])
def test_export_formats_translate_like_the_checkpoint(aligned_run, tmp_path, fmt):
    output = tmp_path / f"pix2pix.{fmt}"
    cfg = compose_config(
        "export", [f"checkpoint={aligned_run['checkpoint']}", f"format={fmt}", f"output={output}"]
    )
    result = run_export(cfg)
    if fmt == "onnx":
        assert result["onnxruntime_max_abs_diff"] < 1e-4
    exported = open_generator(output)
    assert exported.batchnorm == "image"
    image = pil_to_network(random_image(45, 70, seed=5), 3).tensor[None]
    with torch.no_grad():
        expected = load_generator(aligned_run["checkpoint"])(image)
        torch.testing.assert_close(exported.module(image), expected, atol=1e-4, rtol=0)
    if fmt != "safetensors":  # the graph holds its BatchNorm mode
        with pytest.raises(CheckpointError, match="exported with batchnorm=image; export it again"):
            open_generator(output, batchnorm="running")


def test_training_on_paired_folders_backwards_and_eval(tmp_path):
    """Paired folders with data.direction=BtoA: the generator translates the B folders to A, which is
    the direction translate and eval name; the unmatched file was left out."""
    data = make_folders(tmp_path / "data")
    checkpoint = train(data, tmp_path / "run", "data.direction=BtoA", "data.format=folders")
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["global_step"] == 2 * 3
    with pytest.raises(CheckpointError, match="translates BtoA only, not AtoB"):
        open_generator(checkpoint, "AtoB")
    cfg = compose_config(
        "eval",
        [
            f"checkpoint={checkpoint}",
            f"data.root={data}",
            "direction=BtoA",
            f"output={tmp_path / 'metrics.json'}",
            "kid_subsets=2",
            "progress=false",
        ],
    )
    results = run_eval(cfg, extractor=TinyFeatures())
    assert results["BtoA"].num_fake == results["BtoA"].num_real == 2


@pytest.mark.parametrize(
    ("layout", "extra", "message"),
    [
        ("empty", [], "holds no paired data; expected the aligned layout"),
        ("both", [], "holds both aligned splits (train/, test/) and paired folders"),
        ("test only", [], "/train (aligned layout) is missing or holds no image file"),
        ("aligned", ["data.format=folders"], "/trainA (folders layout) is missing"),
    ],
)
def test_bad_paired_roots_fail_the_start_checks_in_one_line(tmp_path, capsys, layout, extra, message):
    root = tmp_path / "data"
    root.mkdir()
    if layout in ("both", "aligned"):
        make_aligned(root)
    if layout == "both":
        make_folders(root)
    if layout == "test only":
        make_aligned(root)
        for path in (root / "train").iterdir():
            path.unlink()
    with pytest.MonkeyPatch.context() as monkeypatch:
        status = run_train(
            [*TINY_PIX2PIX, f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}", *extra], monkeypatch
        )
    assert status == 2
    assert message in capsys.readouterr().err


def test_eval_scores_the_halves_of_the_aligned_test_split(aligned_run, tmp_path):
    cfg = compose_config(
        "eval",
        [
            f"checkpoint={aligned_run['checkpoint']}",
            f"data.root={aligned_run['data']}",
            "direction=AtoB",
            f"output={tmp_path / 'metrics.json'}",
            "kid_subsets=2",
            "progress=false",
        ],
    )
    results = run_eval(cfg, extractor=TinyFeatures())
    assert results["AtoB"].num_fake == results["AtoB"].num_real == 2
    source = split_folder(aligned_run["data"], "test", "B")
    assert source == SplitSource(aligned_run["data"] / "test", 1)
    options = {"batch_size": 2, "resize": None, "max_images": None, "skipped": []}
    (left,) = image_batches(source.folder, 3, half=0, **options)
    (right,) = image_batches(source.folder, 3, half=source.half, **options)
    assert right.shape == left.shape == (2, 3, 40, 40)
    assert (left + right).abs().mean() < 0.05  # B is the negative of A (JPEG aside)
    cfg.direction = "BtoA"
    with pytest.raises(CheckpointError, match="translates AtoB only, not BtoA"):
        run_eval(cfg, extractor=TinyFeatures())
