"""cyclegan-train against the reference trainer (pytorch-CycleGAN-and-pix2pix) on the same CPU recipe,
alternating the two programs in one run (issue 18).

The recipe: a 48-image real-photo unpaired set cut from data/sample (48 foliage, 48 flower images, plus
12 + 12 test images that only cyclegan-train's validation reads), resnet_6blocks, ngf 16, ndf 16,
load 64, crop 56, batch 1, lambda_identity 0.5, N + N epochs, 2 data workers; each program with its
own defaults otherwise (cyclegan-train: logger=csv; the reference: its HTML image pages).

Two figures per program and run:
- whole-run wall time: the process from start to exit (imports, set-up, training, saving);
- time per iteration inside an epoch: the median interval between the starts of consecutive training
  iterations of the same epoch (data wait, both optimizer steps, logging), measured by a callback for
  cyclegan-train (benchmarks/iteration_clock.py) and by timing the reference's
  ``optimize_parameters`` calls from outside its code (a runner that wraps the method, then runs its
  train.py unchanged).

    git clone https://github.com/premsuggu/pytorch-CycleGAN-and-pix2pix /tmp/ref  # its 2025 code
    pip install --target /tmp/ref-site dominate                                    # its one extra need
    python benchmarks/vs_reference.py --reference /tmp/ref --reference-path /tmp/ref-site

Prints JSON and writes benchmarks/results/vs_reference.json.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "vs_reference.json"
SAMPLE = REPO / "data" / "sample"

# Runs the reference's train.py unchanged, timing each optimize_parameters call of its model class
# (models.{model_module}.{model_class}: cycle_gan_model.CycleGANModel, pix2pix_model.Pix2PixModel) and
# each epoch end.
REFERENCE_RUNNER = """
import atexit, json, runpy, sys, time
sys.path.insert(0, {reference!r})
sys.argv = ["train.py", *{args!r}]
from models.base_model import BaseModel
from models.{model_module} import {model_class} as Model
starts, epoch_ends = [], []
optimize, update_lr = Model.optimize_parameters, BaseModel.update_learning_rate
def timed_optimize(self):
    starts.append(time.perf_counter())
    return optimize(self)
def timed_update_lr(self):
    epoch_ends.append(time.perf_counter())
    return update_lr(self)
Model.optimize_parameters, BaseModel.update_learning_rate = timed_optimize, timed_update_lr
def dump():
    with open({clock!r}, "w") as file:
        json.dump({{"iteration_starts": starts, "epoch_ends": epoch_ends}}, file)
atexit.register(dump)
runpy.run_path({train!r}, run_name="__main__")
"""


def make_dataset(root: Path, train_images: int, test_images: int) -> Path:
    """ROOT/{trainA,trainB,testA,testB}: every k-th file of data/sample's splits (spread over its photos)."""
    for split, count in (
        ("trainA", train_images),
        ("trainB", train_images),
        ("testA", test_images),
        ("testB", test_images),
    ):
        files = sorted((SAMPLE / split).iterdir())
        step = max(1, len(files) // count)
        (root / split).mkdir(parents=True)
        for path in files[::step][:count]:
            shutil.copy(path, root / split / path.name)
    return root


def inside_epoch_intervals(clock: dict) -> list[float]:
    """Intervals between consecutive iteration starts that no epoch end separates."""
    starts, ends = clock["iteration_starts"], clock["epoch_ends"]
    return [
        later - earlier
        for earlier, later in itertools.pairwise(starts)
        if not any(earlier < end < later for end in ends)
    ]


def run_timed(command: list[str], env: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as output:
        result = subprocess.run(command, env=env, stdout=output, stderr=subprocess.STDOUT, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} exited with {result.returncode}; see {log}")
    return elapsed


def run_ours(data: Path, work: Path, args: argparse.Namespace) -> dict:
    return run_cyclegan_train(
        [
            "data=folder",
            f"data.root={data}",
            "model=resnet_6blocks",
            "model.generator.ngf=16",
            "model.discriminator.ndf=16",
            "data.load_size=64",
            "data.crop_size=56",
            "data.batch_size=1",
            f"data.num_workers={args.workers}",
            "model.lambda_identity=0.5",
            f"model.n_epochs={args.epochs}",
            f"model.n_epochs_decay={args.epochs}",
        ],
        work,
    )


def run_cyclegan_train(overrides: list[str], work: Path) -> dict:
    """cyclegan-train with ``overrides`` (plus a csv logger, the CPU and the iteration clock) in
    WORK/ours_run: the whole run's wall time and the clock's record."""
    clock = work / "ours_clock.json"
    command = [
        str(Path(sys.executable).with_name("cyclegan-train")),
        *overrides,
        "logger=csv",
        "trainer=cpu",
        f"hydra.run.dir={work / 'ours_run'}",
        "+callbacks.iteration_clock._target_=iteration_clock.IterationClock",
        f"+callbacks.iteration_clock.path={clock}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "benchmarks")}
    wall = run_timed(command, env, work / "ours.log")
    return {"wall_s": wall, "clock": json.loads(clock.read_text())}


def run_reference(data: Path, work: Path, args: argparse.Namespace) -> dict:
    reference_args = [
        "--dataroot", str(data), "--name", "bench", "--model", "cycle_gan",
        "--netG", "resnet_6blocks", "--ngf", "16", "--ndf", "16",
        "--load_size", "64", "--crop_size", "56", "--batch_size", "1",
        "--lambda_identity", "0.5", "--n_epochs", str(args.epochs), "--n_epochs_decay", str(args.epochs),
        "--num_threads", str(args.workers), "--checkpoints_dir", str(work / "reference_run"),
    ]  # fmt: skip
    return run_reference_train(reference_args, ("cycle_gan_model", "CycleGANModel"), work, args)


def run_reference_train(
    reference_args: list[str], model: tuple[str, str], work: Path, args: argparse.Namespace
) -> dict:
    """The reference's train.py with ``reference_args``, timing ``model`` (its models/ module and class):
    the whole run's wall time and the clock's record."""
    clock = work / "reference_clock.json"
    runner = REFERENCE_RUNNER.format(
        reference=str(args.reference),
        args=reference_args,
        clock=str(clock),
        train=str(args.reference / "train.py"),
        model_module=model[0],
        model_class=model[1],
    )
    paths = [str(args.reference), *(str(p) for p in args.reference_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "WANDB_MODE": "disabled"}
    wall = run_timed([sys.executable, "-c", runner], env, work / "reference.log")
    return {"wall_s": wall, "clock": json.loads(clock.read_text())}


def summarize(runs: list[dict]) -> dict:
    intervals = [inside_epoch_intervals(run["clock"]) for run in runs]
    return {
        "wall_s": [round(run["wall_s"], 2) for run in runs],
        "iterations": [len(run["clock"]["iteration_starts"]) for run in runs],
        "iteration_ms_median": [round(1000 * statistics.median(values), 2) for values in intervals],
    }


def side_by_side(data: Path, tmp: Path, args: argparse.Namespace, reference_run, ours_run) -> dict:
    """``args.repeats`` alternating (reference, ours) runs on ``data``, each in its own folder under
    ``tmp``: both summaries and the ratios ours / reference of the medians."""
    ours, reference = [], []
    for repeat in range(args.repeats):
        for name, runner, results in (("reference", reference_run, reference), ("ours", ours_run, ours)):
            work = tmp / f"{name}-{repeat}"
            work.mkdir()
            results.append(runner(data, work, args))
            print(f"{name} run {repeat}: {results[-1]['wall_s']:.1f} s", file=sys.stderr)
    summary = {"reference": summarize(reference), "ours": summarize(ours)}

    def ratio(key: str) -> float:
        return round(
            statistics.median(summary["ours"][key]) / statistics.median(summary["reference"][key]), 3
        )

    return {
        **summary,
        "ours_vs_reference_wall": ratio("wall_s"),
        "ours_vs_reference_iteration": ratio("iteration_ms_median"),
    }


def parse_arguments(
    doc: str, argv: list[str] | None, *, epochs: int, images: int, images_help: str
) -> argparse.Namespace:
    """The options of a side-by-side run against the reference (``epochs``, ``images``: defaults)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="checkout of the reference project")
    parser.add_argument("--reference-path", type=Path, nargs="*", default=[], help="extra PYTHONPATH for it")
    parser.add_argument("--epochs", type=int, default=epochs, help="epochs at the initial lr (as many decay)")
    parser.add_argument("--images", type=int, default=images, help=images_help)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="alternating (reference, ours) pairs")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def run_context(load_at_start: list[float]) -> dict:
    """When, where and with what a benchmark ran: the machine is shared, so its load goes with the figures."""
    return {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "load_average_at_start": load_at_start,
        "load_average_at_end": load_average(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }


def report(record: dict, path: Path, *, write: bool) -> None:
    """Print the record as JSON and, with ``write``, store it at ``path``."""
    print(json.dumps(record, indent=2))
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(__doc__, argv, epochs=25, images=48, images_help="training images per domain")
    load_at_start = load_average()
    with tempfile.TemporaryDirectory(prefix="vs-reference-") as tmp:
        data = make_dataset(Path(tmp) / "data", args.images, 12)
        summary = side_by_side(data, Path(tmp), args, run_reference, run_ours)
    record = {
        **run_context(load_at_start),
        "recipe": {
            "images_per_domain": args.images,
            "epochs": f"{args.epochs} + {args.epochs}",
            "workers": args.workers,
            "generator": "resnet_6blocks ngf 16",
            "discriminator": "basic ndf 16",
            "load_crop": "64 / 56",
        },
        **summary,
    }
    report(record, RESULTS, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
