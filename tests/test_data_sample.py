"""The sample dataset shipped in data/sample: layout, size budget, provenance notes, and that it loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cyclegan.data import UnpairedImageDataModule

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE = DATA / "sample"


def test_layout_size_and_format():
    counts = {
        split: len(list((SAMPLE / split).glob("*.jpg"))) for split in ("trainA", "trainB", "testA", "testB")
    }
    assert counts == {"trainA": 200, "trainB": 200, "testA": 24, "testB": 24}
    total = sum(path.stat().st_size for path in SAMPLE.rglob("*") if path.is_file())
    assert total <= 3_000_000
    with Image.open(next((SAMPLE / "trainA").glob("*.jpg"))) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (96, 96))


def test_every_source_photo_is_credited():
    readme = (DATA / "README.md").read_text()
    assert "GNU GENERAL PUBLIC LICENSE\n" in (SAMPLE / "COPYING").read_text()[:100]
    stems = {path.name.rsplit("_", 1)[0] for path in SAMPLE.rglob("*.jpg")}
    assert len(stems) == 8
    for stem in stems:
        assert f"`{stem}.jpg`" in readme


def test_domains_differ_in_colour():
    """The documented difference is real: foliage is green, flowers are orange/yellow (red minus green)."""

    def redness(split: str) -> float:
        return float(
            np.mean(
                [
                    np.asarray(Image.open(p), dtype=np.float64)[..., :2] @ [1, -1]
                    for p in (SAMPLE / split).glob("*.jpg")
                ]
            )
        )

    for split in ("train", "test"):
        assert redness(f"{split}B") - redness(f"{split}A") > 60


def test_sample_trains_through_the_datamodule_at_the_make_train_size():
    dm = UnpairedImageDataModule(str(SAMPLE), load_size=72, crop_size=64, num_workers=0, batch_size=4)
    dm.setup("fit")
    assert len(dm.train_dataset) == 200
    batch = next(iter(dm.train_dataloader()))
    assert batch["A"].shape == batch["B"].shape == (4, 3, 64, 64)
    assert dm.val_dataset is not None and len(dm.val_dataset) == 24
