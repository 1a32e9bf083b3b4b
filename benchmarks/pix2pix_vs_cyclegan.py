"""pix2pix against CycleGAN on a paired task built from real photos with a known mapping, at equal
iterations on the CPU, side by side in one run (issue 14): does paired supervision show?

The task is data/sample_pix2pix: 120 train and 24 test pairs of 96x96 photo crops, B the photo and A its
grayscale blurred by a Gaussian of radius 1.5 px (data/make_sample_pix2pix.py): colour and sharpness are
to be restored, and the true B of every test A is known. pix2pix trains on the pairs with
`experiment=sample_pix2pix` as shipped; CycleGAN trains with `experiment=sample` (its own small recipe:
resnet 3 blocks ngf 16, instance norm, LSGAN, cycle 10, identity 0.5, pool 50) on the same images split
into trainA (the A halves) and trainB (the B halves), drawn unpaired as CycleGAN does. Both: load 72 ->
crop 64 + flip, batch 1, the same epochs, so the same number of iterations. Then each A->B generator
translates the 24 test A images at full size (``cyclegan.load_generator``) and the error to the true B is
measured: mean absolute error on 0..255 and PSNR; the untranslated A against B is the do-nothing
baseline.

    OMP_NUM_THREADS=1 python benchmarks/pix2pix_vs_cyclegan.py

Prints JSON and writes benchmarks/results/pix2pix_vs_cyclegan.json and docs/pix2pix_vs_cyclegan.png, the
grid the README and BENCHMARKS.md show: test pairs (real A | pix2pix | CycleGAN | real B), the first crop
of each of the eight photos."""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import vs_reference
from PIL import Image
from torchvision.transforms.functional import to_pil_image

from cyclegan.data import PairedImageDataModule
from cyclegan.inference import load_generator
from cyclegan.model import image_grid

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "pix2pix_vs_cyclegan.json"
SAMPLE = REPO / "data" / "sample_pix2pix"
GRID = REPO / "docs" / "pix2pix_vs_cyclegan.png"
GRID_COLUMNS = ("real_A", "pix2pix", "cyclegan", "real_B")


def unpaired_split(root: Path) -> Path:
    """ROOT/{train,test}{A,B}: the halves of data/sample_pix2pix's pairs as two unpaired domains."""
    for split in ("train", "test"):
        for folder in ("A", "B"):
            (root / f"{split}{folder}").mkdir(parents=True)
        for path in sorted((SAMPLE / split).glob("*.jpg")):
            with Image.open(path) as pair:
                half = pair.width // 2
                pair.crop((0, 0, half, pair.height)).save(root / f"{split}A" / f"{path.stem}.png")
                pair.crop((half, 0, 2 * half, pair.height)).save(root / f"{split}B" / f"{path.stem}.png")
    return root


def test_pairs() -> list[dict]:
    """The test pairs at full size, in [-1, 1] (batches of one)."""
    data = PairedImageDataModule(str(SAMPLE), test_preprocess="none", num_workers=0)
    data.setup("test")
    return list(data.test_dataloader())


def errors(outputs: list[torch.Tensor], targets: list[torch.Tensor]) -> dict[str, float]:
    """Mean absolute error on 0..255 and mean PSNR (dB) over the images."""
    maes, psnrs = [], []
    for output, target in zip(outputs, targets, strict=True):
        difference = (output.clamp(-1, 1) - target) * 127.5
        maes.append(float(difference.abs().mean()))
        psnrs.append(10 * math.log10(255**2 / max(float(difference.square().mean()), 1e-12)))
    return {"mae_255": round(statistics.mean(maes), 2), "psnr_db": round(statistics.mean(psnrs), 2)}


def translate_all(checkpoint: Path, pairs: list[dict]) -> list[torch.Tensor]:
    generator = load_generator(checkpoint, "AtoB")
    with torch.no_grad():
        return [generator(pair["A"]) for pair in pairs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs at the initial lr (as many decay)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--grid-images", type=int, default=8, help="test pairs in the grids, spread evenly")
    parser.add_argument("--no-write", action="store_true", help="print only (no JSON, no grids)")
    args = parser.parse_args(argv)

    load_at_start = vs_reference.load_average()
    schedule = [f"model.n_epochs={args.epochs}", f"model.n_epochs_decay={args.epochs}"]
    common = [*schedule, f"data.num_workers={args.workers}", "trainer.limit_val_batches=0"]
    pairs = test_pairs()
    targets = [pair["B"] for pair in pairs]
    with tempfile.TemporaryDirectory(prefix="pix2pix-vs-cyclegan-") as tmp:
        runs = {
            "pix2pix": ["experiment=sample_pix2pix", f"data.root={SAMPLE}"],
            "cyclegan": ["experiment=sample", f"data.root={unpaired_split(Path(tmp) / 'unpaired')}"],
        }
        results, outputs = {}, {}
        for name, overrides in runs.items():
            work = Path(tmp) / name
            work.mkdir()
            run = vs_reference.run_cyclegan_train([*overrides, *common], work)
            outputs[name] = translate_all(work / "ours_run" / "checkpoints" / "last.ckpt", pairs)
            results[name] = {
                **errors(outputs[name], targets),
                "iterations": len(run["clock"]["iteration_starts"]),
                "train_wall_s": round(run["wall_s"], 1),
                "iteration_ms_median": vs_reference.summarize([run])["iteration_ms_median"][0],
            }
            print(f"{name}: {results[name]}", file=sys.stderr)
    results["input_as_output"] = errors([pair["A"] for pair in pairs], targets)
    record = {
        **vs_reference.run_context(load_at_start),
        "task": "data/sample_pix2pix: A = grayscale blurred (radius 1.5 px) of the photo B; 24 test pairs",
        "epochs": f"{args.epochs} + {args.epochs}",
        **results,
        "pix2pix_vs_cyclegan_mae": round(results["pix2pix"]["mae_255"] / results["cyclegan"]["mae_255"], 3),
    }
    vs_reference.report(record, RESULTS, write=not args.no_write)
    if not args.no_write:
        shown = range(0, len(pairs), max(1, len(pairs) // args.grid_images))  # the first crop of each photo
        visuals = {
            "real_A": torch.cat([pairs[index]["A"] for index in shown]),
            "real_B": torch.cat([targets[index] for index in shown]),
            **{name: torch.cat([images[index] for index in shown]) for name, images in outputs.items()},
        }
        # 256 colours keep the PNG about a quarter of its true-colour size, for the repository
        grid = to_pil_image(image_grid(visuals, args.grid_images, (GRID_COLUMNS,)))
        grid.quantize(256, method=Image.Quantize.MEDIANCUT).save(GRID, optimize=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
