"""Regenerate data/sample: 96x96 JPEG crops of real, freely licensed photographs in two domains.

Domain A, foliage: close-up photos of green leaves and grass (plus one of a ladybird on a leaf among
small blue flowers). Domain B, flowers: close-up photos of orange, red and yellow flower petals (plus
one of a dandelion seed against an orange blur). The difference a model learns is both colour (green
vs orange/yellow) and texture (leaf veins and grass blades vs petals), like apple2orange.

All eight photos ship in the Debian package `mate-backgrounds` (version 1.26.0-1, folder
/usr/share/backgrounds/mate/nature), licensed GPL-2+ (see data/README.md for each photographer).
Needs: apt-get and dpkg-deb (Debian/Ubuntu) or a folder holding the photos (--photos DIR), and Pillow
and numpy (project dependencies). Output is deterministic for a given Pillow/libjpeg build.

    python data/make_sample.py                 # fetches the .deb with apt-get download (46 MB)
    python data/make_sample.py --photos DIR    # uses DIR/<photo>.jpg
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGE = "mate-backgrounds"
PACKAGE_PHOTO_DIR = "usr/share/backgrounds/mate/nature"
# photo file stem -> domain
PHOTOS: dict[str, str] = {
    "Blinds": "A",
    "GreenMeadow": "A",
    "RainDrops": "A",
    "LadyBird": "A",
    "FreshFlower": "B",
    "Garden": "B",
    "YellowFlower": "B",
    "TwoWings": "B",
}
TILE = 96  # side of every sample image
WORKING_SHORT_SIDE = 480  # photos are first scaled so their short side is this many pixels
TEST_FRACTION = 0.2  # the rightmost 20% of each photo is kept for test crops only (no train/test overlap)
CROPS = {"train": 200, "test": 24}  # per domain, split evenly over the domain's photos
JPEG_QUALITY = 85


def fetch_photos(workdir: Path) -> Path:
    """apt-get download the package and unpack it; returns the folder holding the photos."""
    subprocess.run(["apt-get", "download", PACKAGE], cwd=workdir, check=True)
    deb = next(workdir.glob(f"{PACKAGE}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(workdir / "unpacked")], check=True)
    return workdir / "unpacked" / PACKAGE_PHOTO_DIR


def working_copy(path: Path) -> Image.Image:
    """The photo as RGB with its short side scaled to WORKING_SHORT_SIDE (bicubic, antialiased)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = WORKING_SHORT_SIDE / min(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def cut_crops(image: Image.Image, count: int, split: str, rng: np.random.Generator) -> list[Image.Image]:
    """`count` square crops of random side 96..192 px, inside the train (left) or test (right) region."""
    boundary = int(image.width * (1 - TEST_FRACTION))
    left_min, left_max_edge = (0, boundary) if split == "train" else (boundary, image.width)
    crops = []
    for _ in range(count):
        side = int(rng.integers(TILE, 2 * TILE + 1))
        side = min(side, left_max_edge - left_min, image.height)
        left = int(rng.integers(left_min, left_max_edge - side + 1))
        top = int(rng.integers(0, image.height - side + 1))
        crop = image.crop((left, top, left + side, top + side))
        crops.append(crop.resize((TILE, TILE), Image.Resampling.BICUBIC, reducing_gap=3.0))
    return crops


def build(photo_dir: Path, output: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for split, total in CROPS.items():
        for domain in ("A", "B"):
            stems = [stem for stem, photo_domain in PHOTOS.items() if photo_domain == domain]
            folder = output / f"{split}{domain}"
            shutil.rmtree(folder, ignore_errors=True)  # other files in output (COPYING) stay
            folder.mkdir(parents=True)
            for position, stem in enumerate(stems):
                share = total // len(stems) + (1 if position < total % len(stems) else 0)
                image = working_copy(photo_dir / f"{stem}.jpg")
                for number, crop in enumerate(cut_crops(image, share, split, rng)):
                    crop.save(folder / f"{stem}_{number:03d}.jpg", quality=JPEG_QUALITY, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--photos", type=Path, help="folder with the source photos (default: apt-get download)"
    )
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        photo_dir = args.photos or fetch_photos(Path(workdir))
        build(photo_dir, args.output, args.seed)
    files = sorted(args.output.rglob("*.jpg"))
    size = sum(path.stat().st_size for path in files)
    print(f"wrote {len(files)} images, {size / 1e6:.2f} MB, to {args.output}")


if __name__ == "__main__":
    main()
