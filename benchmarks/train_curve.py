"""Loss curves of a short CycleGAN training: the fastest settings (bf16-mixed) against fp32 eager.

Three trainings of resnet_9blocks + 70x70 PatchGAN at 256x256, batch 1, ITERATIONS iterations each,
through the Python API as a user trains (pl.Trainer + cyclegan.model.CycleGAN +
cyclegan.data.UnpairedImageDataModule on a folder of real JPEG (domain A) and PNG (domain B) files this
script writes first), every loss logged at every iteration by Lightning's CSVLogger:

- ``fp32_seed0``: fp32 eager (our networks and kernels, NCHW, no compilation), seed 0;
- ``fast_seed0``: the fastest settings of benchmarks/train_step.py (bf16-mixed, channels_last, fused
  Triton InstanceNorm, torch.compile), seed 0: the same initial weights, data order, crops, flips and
  image-pool draws as ``fp32_seed0``, so any difference comes from the settings;
- ``fp32_seed1``: fp32 eager, seed 1: what changing nothing but the seed does (run-to-run noise).

Criterion ("within run-to-run noise"): the iterations are cut into 10 windows; for a loss, the gap between
two runs is the mean over windows of |difference of the window means|. The fast settings are within noise
when, for each of the generator total ``G`` and the discriminator losses ``D_A`` and ``D_B``, the gap
fast_seed0 vs fp32_seed0 is at most the gap fp32_seed1 vs fp32_seed0. The same seed keeps everything but
the arithmetic equal, so a correct bf16 run tracks fp32 at least as closely as another seed does; every
loss's two gaps and their ratio are reported. A torch.profiler table of one iteration (three quarters
in) of ``fast_seed0`` and ``fp32_seed0``, top entries by self device time, goes with the curves.

    python benchmarks/train_curve.py        # needs CUDA; writes benchmarks/results/train_curve.json
    python benchmarks/train_curve.py --dry-run --iterations 10 --output X.json   # tiny, any device

A ``--dry-run`` uses tiny networks and 32x32 images on whatever device is present (not a measurement;
writes only where ``--output`` says). The JSON is rewritten after every training, so a run cut short keeps
the curves it has.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger
from train_step import (
    FASTEST,
    FP32_EAGER,
    GPU_SIZES,
    TINY_SIZES,
    build_model,
    environment,
    networks_text,
    write,
)

from cyclegan.data import UnpairedImageDataModule

RESULTS = Path(__file__).resolve().parent / "results" / "train_curve.json"
# In order of need when time runs short: the pair compared first, the noise reference last.
RUNS = [("fp32_seed0", FP32_EAGER, 0), ("fast_seed0", FASTEST, 0), ("fp32_seed1", FP32_EAGER, 1)]
PROFILED = ("fast_seed0", "fp32_seed0")
DECIDING_LOSSES = ("G", "D_A", "D_B")
WINDOWS = 10
IMAGES_PER_DOMAIN = 40


def write_images(root: Path, size: int, count: int = IMAGES_PER_DOMAIN) -> None:
    """ROOT/trainA (JPEG: smooth colour stripes) and ROOT/trainB (PNG: blobs on a checkerboard), seeded."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for domain, suffix in (("trainA", ".jpg"), ("trainB", ".png")):
        folder = root / domain
        folder.mkdir(parents=True)
        for index in range(count):
            angle, frequency = rng.uniform(0, np.pi), rng.uniform(2, 6)
            phases, centre = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.2, 0.8, 2)
            if domain == "trainA":
                wave = np.cos(angle) * xx + np.sin(angle) * yy
                channels = [np.sin(2 * np.pi * frequency * wave + phase) for phase in phases]
            else:
                cells = int(frequency) * 2
                checker = ((np.floor(xx * cells) + np.floor(yy * cells)) % 2) * 2 - 1
                blob = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) * 20)
                channels = [0.4 * checker + np.cos(phase) * blob for phase in phases]
            pixels = np.clip((np.stack(channels, axis=-1) * 0.5 + 0.5) * 255, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index:03d}{suffix}")


class ProfileOneIteration(pl.Callback):
    """torch.profiler over one training iteration (CPU ops, and CUDA kernels when on a GPU)."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration
        self.profiler: torch.profiler.profile | None = None
        self.table = ""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int):
        if trainer.fit_loop.total_batch_idx == self.iteration:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.profiler is None:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.profiler.__exit__(None, None, None)
        sort_by = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        self.table = self.profiler.key_averages().table(
            sort_by=sort_by, row_limit=25, max_name_column_width=80
        )
        self.profiler = None


def read_losses(metrics_csv: Path, names: tuple[str, ...]) -> dict[str, list[float | None]]:
    """Per-iteration ``train/<name>_step`` values from a CSVLogger file (None where a step was skipped)."""
    with metrics_csv.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("lr/G")]  # iteration rows, not epoch ends
    return {
        name: [float(row[f"train/{name}_step"]) if row.get(f"train/{name}_step") else None for row in rows]
        for name in names
    }


def train(
    setting: dict[str, Any],
    seed: int,
    sizes: dict[str, int],
    iterations: int,
    data: Path,
    logs: Path,
    profile: bool,
) -> dict[str, Any]:
    """One training from scratch; returns its per-iteration losses and the profiler table (if asked)."""
    torch._dynamo.reset()
    pl.seed_everything(seed, verbose=False)
    model = build_model(setting, sizes, seed)
    cuda = torch.cuda.is_available()
    datamodule = UnpairedImageDataModule(
        str(data),
        load_size=sizes["crop"] + sizes["crop"] // 8,  # 286 for 256, as the reference
        crop_size=sizes["crop"],
        batch_size=1,
        num_workers=4 if cuda else 0,
        seed=seed,
    )
    profiler = ProfileOneIteration(iterations * 3 // 4) if profile else None
    logger = CSVLogger(logs, name=f"{setting['name']}_seed{seed}")
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision=setting["precision"],
        benchmark=cuda,
        max_steps=2 * iterations,  # two optimizer steps per iteration
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[profiler] if profiler else [],
    )
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    seconds = time.perf_counter() - started
    losses = read_losses(Path(logger.log_dir) / "metrics.csv", model.loss_names)
    if len(losses["G"]) != iterations:
        raise RuntimeError(f"expected {iterations} logged iterations, found {len(losses['G'])}")
    return {
        "setting": setting,
        "seed": seed,
        "seconds": round(seconds, 1),
        "nonfinite_skipped": model.nonfinite_total,
        "losses": losses,
        "profile": profiler.table if profiler else None,
    }


def window_means(values: list[float | None], windows: int) -> list[float]:
    """Means of ``windows`` equal consecutive slices (skipped iterations left out; NaN if all are)."""
    size = len(values) // windows
    means = []
    for index in range(windows):
        finite = [v for v in values[index * size : (index + 1) * size] if v is not None and math.isfinite(v)]
        means.append(sum(finite) / len(finite) if finite else math.nan)
    return means


def gap(a: list[float | None], b: list[float | None], windows: int) -> float:
    """Mean over windows of |difference of window means| between two runs' curves of one loss."""
    pairs = zip(window_means(a, windows), window_means(b, windows), strict=True)
    return sum(abs(x - y) for x, y in pairs) / windows


def compare(runs: dict[str, dict[str, Any]], windows: int) -> dict[str, Any]:
    """The criterion of the module docstring, per loss and overall."""
    fast, fp32, other_seed = (runs[name]["losses"] for name in ("fast_seed0", "fp32_seed0", "fp32_seed1"))
    per_loss = {}
    for name in fp32:
        settings_gap, noise_gap = (
            gap(fast[name], fp32[name], windows),
            gap(other_seed[name], fp32[name], windows),
        )
        per_loss[name] = {
            "gap_fast_vs_fp32": round(settings_gap, 5),
            "gap_fp32_seed1_vs_seed0": round(noise_gap, 5),
            "ratio": round(settings_gap / noise_gap, 3) if noise_gap > 0 else None,
        }
    deciding = [per_loss[name] for name in DECIDING_LOSSES]
    return {
        "criterion": (
            f"for each of {', '.join(DECIDING_LOSSES)}: mean over {windows} windows of |window-mean "
            "difference| between fast_seed0 and fp32_seed0 <= the same gap between fp32_seed1 and "
            "fp32_seed0; no non-finite loss in any run"
        ),
        "losses": per_loss,
        "within_noise": all(e["gap_fast_vs_fp32"] <= e["gap_fp32_seed1_vs_seed0"] for e in deciding)
        and all(runs[name]["nonfinite_skipped"] == 0 for name in runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=None, help="per training (default 200; dry run 10)")
    parser.add_argument("--dry-run", action="store_true", help="tiny networks and images on any device")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out of the fast run")
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON to write (default: results/, dry run: none)"
    )
    parser.add_argument(
        "--profile-table", type=Path, default=None, help="also write the profiler tables here"
    )
    args = parser.parse_args(argv)
    if not (args.dry_run or torch.cuda.is_available()):
        print(
            "benchmarks/train_curve.py trains resnet_9blocks at 256x256 and needs a CUDA GPU; none is "
            "available. Run it with --dry-run to check the script here (tiny networks, no figures).",
            file=sys.stderr,
        )
        return 2
    sizes = TINY_SIZES if args.dry_run else GPU_SIZES
    iterations = args.iterations or (10 if args.dry_run else 200)
    if iterations < WINDOWS:
        parser.error(f"--iterations must be >= {WINDOWS} (one per comparison window)")
    output = args.output if args.output is not None or args.dry_run else RESULTS
    report: dict[str, Any] = {
        "benchmark": "train_curve",
        "mode": "dry run (tiny networks, not a measurement)" if args.dry_run else "gpu",
        **environment(),
        "networks": networks_text(sizes),
        "crop": sizes["crop"],
        "batch_size": 1,
        "iterations": iterations,
        "windows": WINDOWS,
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="train_curve_") as scratch:
        data = Path(scratch) / "data"
        write_images(data, sizes["crop"])
        for name, setting, seed in RUNS:
            if args.no_compile:
                setting = {**setting, "compile": False}
            run = train(setting, seed, sizes, iterations, data, Path(scratch) / "logs", name in PROFILED)
            report["runs"][name] = run
            write(report, output)
            print(
                f"{name}: {run['seconds']} s, final G {run['losses']['G'][-1]}", file=sys.stderr, flush=True
            )
    report["comparison"] = compare(report["runs"], WINDOWS)
    write(report, output)
    if args.profile_table is not None:
        tables = [f"== {name} ==\n{run['profile']}" for name, run in report["runs"].items() if run["profile"]]
        args.profile_table.write_text("\n\n".join(tables) + "\n")
    print(json.dumps(report["comparison"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
