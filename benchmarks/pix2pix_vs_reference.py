"""cyclegan-train's pix2pix against the reference's pix2pix (pytorch-CycleGAN-and-pix2pix) on the same CPU
recipe, alternating the two programs in one run (issue 14), with the machinery of benchmarks/vs_reference.py.

The recipe: the first N aligned pairs of data/sample_pix2pix/train (96x96 halves, A = blurred grayscale,
B = colour photo), each program with the reference's pix2pix defaults (U-Net with batch norm and dropout,
conditional PatchGAN with batch norm, vanilla GAN + 100 x L1, Adam 2e-4, batch 1, no pool) at a CPU size:
unet_128 ngf 16, ndf 16, load 143 -> crop 128 (the 286/256 ratio), E + E epochs, 2 data workers; no
validation on either side. cyclegan-train logs to csv; the reference writes its HTML image pages.

Figures per program: the whole run's wall time and the median time per iteration inside an epoch (the
interval between consecutive iteration starts: data wait, both optimizer steps, logging), measured by
benchmarks/iteration_clock.py for cyclegan-train and by timing the reference's
``Pix2PixModel.optimize_parameters`` calls from outside its unchanged train.py.

    python benchmarks/pix2pix_vs_reference.py --reference /tmp/ref/cyclegan-ref --reference-path /tmp/ref/site

Prints JSON and writes benchmarks/results/pix2pix_vs_reference.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import vs_reference

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "pix2pix_vs_reference.json"
SAMPLE = REPO / "data" / "sample_pix2pix"
# the recipe both programs run (besides the reference's pix2pix defaults they share)
GENERATOR, NGF, NDF, LOAD, CROP = "unet_128", 16, 16, 143, 128


def make_dataset(root: Path, images: int) -> Path:
    """ROOT/train: every k-th aligned pair of data/sample_pix2pix/train (spread over its eight photos)."""
    files = sorted((SAMPLE / "train").glob("*.jpg"))
    step = max(1, len(files) // images)
    (root / "train").mkdir(parents=True)
    for path in files[::step][:images]:
        shutil.copy(path, root / "train" / path.name)
    return root


def run_ours(data: Path, work: Path, args: argparse.Namespace) -> dict:
    return vs_reference.run_cyclegan_train(
        [
            "model=pix2pix",
            "data=paired",
            f"data.root={data}",
            f"model.generator.arch={GENERATOR}",
            f"model.generator.ngf={NGF}",
            f"model.discriminator.ndf={NDF}",
            f"data.load_size={LOAD}",
            f"data.crop_size={CROP}",
            "data.batch_size=1",
            f"data.num_workers={args.workers}",
            f"model.n_epochs={args.epochs}",
            f"model.n_epochs_decay={args.epochs}",
        ],
        work,
    )


def run_reference(data: Path, work: Path, args: argparse.Namespace) -> dict:
    reference_args = [
        "--dataroot", str(data), "--name", "bench", "--model", "pix2pix", "--direction", "AtoB",
        "--netG", GENERATOR, "--ngf", str(NGF), "--ndf", str(NDF),
        "--load_size", str(LOAD), "--crop_size", str(CROP), "--batch_size", "1",
        "--n_epochs", str(args.epochs), "--n_epochs_decay", str(args.epochs),
        "--num_threads", str(args.workers), "--checkpoints_dir", str(work / "reference_run"),
    ]  # fmt: skip
    return vs_reference.run_reference_train(reference_args, ("pix2pix_model", "Pix2PixModel"), work, args)


def main(argv: list[str] | None = None) -> int:
    args = vs_reference.parse_arguments(__doc__, argv, epochs=2, images=60, images_help="training pairs")
    load_at_start = vs_reference.load_average()
    with tempfile.TemporaryDirectory(prefix="pix2pix-vs-reference-") as tmp:
        data = make_dataset(Path(tmp) / "data", args.images)
        summary = vs_reference.side_by_side(data, Path(tmp), args, run_reference, run_ours)
    record = {
        **vs_reference.run_context(load_at_start),
        "recipe": {
            "pairs": args.images,
            "epochs": f"{args.epochs} + {args.epochs}",
            "workers": args.workers,
            "generator": f"{GENERATOR} ngf {NGF}, batch norm, dropout",
            "discriminator": f"basic ndf {NDF}, batch norm, conditional (6 input channels)",
            "load_crop": f"{LOAD} / {CROP}",
        },
        **summary,
    }
    vs_reference.report(record, RESULTS, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
