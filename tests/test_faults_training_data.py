"""Training data and outputs under faults (issue 15, items 12, 15 and 22): data problems found inside the
DataLoader workers end the run with one line from the main process, ``data.skip_bad_images=false`` works
as the README writes it, and every run leaves an image grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_inference_support import compose_config
from test_train_cli import TINY, make_unpaired_dataset, run_train, run_train_subprocess


def write_images(folder: Path, sizes: list[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index, size in enumerate(sizes):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")


def one_error_line(result) -> str:
    """The run failed with exit status 2 and exactly one error line, no traceback."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    return line


def folder_args(root: Path, out: Path, *extra: str) -> list[str]:
    """The folder config with its default worker count (data.num_workers=4)."""
    return [
        *TINY,
        "data=folder",
        f"data.root={root}",
        "logger=csv",
        "trainer.max_steps=8",
        "trainer.limit_val_batches=0",
        f"hydra.run.dir={out}",
        *extra,
    ]


def test_skip_bad_images_is_a_config_key() -> None:
    """Written as the README writes it, without Hydra's ``+``."""
    assert compose_config("train", []).data.skip_bad_images is True
    assert compose_config("train", ["data.skip_bad_images=false"]).data.skip_bad_images is False


def test_a_bad_image_with_skip_bad_images_false_is_one_line_naming_it(tmp_path: Path) -> None:
    root = make_unpaired_dataset(tmp_path / "data")
    bad = root / "trainA" / "trainA_0.png"
    bad.write_bytes(b"not an image at all")
    result = run_train_subprocess(folder_args(root, tmp_path / "run", "data.skip_bad_images=false"))
    line = one_error_line(result)
    assert line.startswith(f"cyclegan-train: error: training data: bad image '{bad}': "), line


def test_every_training_image_unreadable_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for split in ("trainA", "trainB"):
        (root / split).mkdir(parents=True)
        for index in range(3):
            (root / split / f"{index}.png").write_bytes(b"\x89PNG truncated download")
    line = one_error_line(run_train_subprocess(folder_args(root, tmp_path / "run")))
    assert line.startswith("cyclegan-train: error: training data: 50 unreadable images in a row in "), line
    assert "trainA" in line and "the folder looks broken" in line


def test_mixed_sizes_without_cropping_in_batches_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_images(root / "trainA", [40, 48, 56, 64])
    write_images(root / "trainB", [40, 48, 56, 64])
    args = folder_args(root, tmp_path / "run", "data.preprocess=none", "data.batch_size=2")
    line = one_error_line(run_train_subprocess(args))
    assert line.startswith("cyclegan-train: error: training data: images in one batch have different sizes")
    assert "use batch_size=1 or a cropping mode" in line


@pytest.mark.parametrize(
    "limit", [["trainer.max_steps=6"], ["debug=fdr"]], ids=["shorter than the interval", "fast_dev_run"]
)
def test_every_run_leaves_an_image_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit) -> None:
    root = make_unpaired_dataset(tmp_path / "data")
    out = tmp_path / "run"
    args = [
        *TINY,
        "data=folder",
        f"data.root={root}",
        "data.num_workers=0",
        "logger=csv",
        "trainer.limit_val_batches=0",
        "callbacks.image_grid.every_n_steps=200",
        f"hydra.run.dir={out}",
        *limit,
    ]
    assert run_train(args, monkeypatch) == 0
    last_iteration = 3 if limit == ["trainer.max_steps=6"] else 1  # two optimizer steps per iteration
    grids = [path.name for path in (out / "images").iterdir()]
    assert grids == [f"step_{last_iteration:06d}.png"]
    assert Image.open(out / "images" / grids[0]).size[0] > 0
