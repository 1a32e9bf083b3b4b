"""Regenerate data/sample_pix2pix: a paired (pix2pix) sample made from the shipped photo crops of data/sample.

Each output image is in the reference's aligned format, A on the left half and B on the right: B is one
96x96 crop of data/sample as it is, and A is B through a known mapping, grayscale (PIL's ITU-R 601-2
luma) blurred by a Gaussian of radius 1.5 px. A model trained A -> B learns to restore colour and
sharpness. Paired supervision (pix2pix) sees the true B of every A; unpaired training (CycleGAN) sees only
the two sets of images, so this is where the difference shows.

Train pairs come from data/sample's train crops and test pairs from its test crops (which were cut from
a part of each photo the train crops never touch): the first TRAIN_PER_PHOTO / TEST_PER_PHOTO crops of
each of the eight photos, foliage and flowers alike. Needs only Pillow; the output is byte-identical
for a given Pillow build.

    python data/make_sample_pix2pix.py
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image, ImageFilter

DATA = Path(__file__).resolve().parent
TRAIN_PER_PHOTO = 15
TEST_PER_PHOTO = 3
BLUR_RADIUS = 1.5
JPEG_QUALITY = 90


def degrade(photo: Image.Image) -> Image.Image:
    """The known mapping B -> A: grayscale, then a Gaussian blur (as RGB, so both halves share a mode)."""
    gray = photo.convert("L").filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    return gray.convert("RGB")


def aligned_pair(photo: Image.Image) -> Image.Image:
    """A | B side by side: the degraded image on the left, the photo on the right."""
    pair = Image.new("RGB", (2 * photo.width, photo.height))
    pair.paste(degrade(photo), (0, 0))
    pair.paste(photo, (photo.width, 0))
    return pair


def chosen_crops(folder: Path, per_photo: int) -> list[Path]:
    """The first ``per_photo`` crops of each photo in ``folder`` (files are named PHOTO_NNN.jpg)."""
    by_photo: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.jpg")):
        by_photo.setdefault(path.stem.rsplit("_", 1)[0], []).append(path)
    return [path for paths in by_photo.values() for path in paths[:per_photo]]


def build(source: Path, output: Path) -> int:
    """Write OUTPUT/train and OUTPUT/test from SOURCE's crops; returns the number of files written."""
    written = 0
    for split, per_photo in (("train", TRAIN_PER_PHOTO), ("test", TEST_PER_PHOTO)):
        folder = output / split
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for domain in ("A", "B"):
            for path in chosen_crops(source / f"{split}{domain}", per_photo):
                with Image.open(path) as photo:
                    pair = aligned_pair(photo.convert("RGB"))
                pair.save(folder / path.name, quality=JPEG_QUALITY, optimize=True)
                written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DATA / "sample", help="the unpaired sample to use")
    parser.add_argument("--output", type=Path, default=DATA / "sample_pix2pix")
    args = parser.parse_args()
    count = build(args.source, args.output)
    size = sum(path.stat().st_size for path in args.output.rglob("*.jpg"))
    print(f"wrote {count} aligned pairs, {size / 1e6:.2f} MB, to {args.output}")


if __name__ == "__main__":
    main()
