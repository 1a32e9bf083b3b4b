"""CUT and FastCUT against CycleGAN on this machine, side by side in one run: time per training iteration,
peak memory of one iteration, and translation quality on a small unpaired task with a known answer.

- Time: each model trains through the Lightning Trainer on the same in-memory batches (same generator
  and discriminator settings, same crop, batch 1, one torch thread); time per iteration after a
  warm-up, as this process's CPU time (the work done, which other jobs on a shared machine do not
  change) and as wall time. The models take turns within each repeat (the order rotates), and the
  ratios are medians over repeats of the ratio within the repeat.
- Memory: each measurement in a fresh process with glibc returning every block >= 64 KiB to the system
  (MALLOC_MMAP_THRESHOLD_), so the resident set follows the live tensors: the peak resident set (VmHWM,
  reset just before) during the third iteration, above the resident set before it ("iteration": the
  activations, gradients and temporaries) and above the process before the model was built ("total":
  also weights and Adam state). Repeated, interleaved, medians.
- Quality: domain A is random crops of the photos in data/sample, domain B other random crops of the
  same photos through a fixed colour transform (a channel rotation with a gain), so the right
  translation of a test crop is known: the transform of it. Each model trains the same number of
  iterations on the same unpaired stream (half of them at the initial learning rate, half with the
  linear decay), at several seeds, with smaller networks than the time measurement so that it fits a
  CPU; the error is the mean absolute difference (in [-1, 1] units) between G(A) and the transformed
  test crops (testA and testB photos, centre crops).

    python benchmarks/cut.py                      # prints JSON, writes benchmarks/results/cut.json
    python benchmarks/cut.py --quality-iters 300 --seeds 0 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, read_image
from train_step import SyntheticPairs

from cyclegan.model import CUT, CycleGAN, GANModule

RESULTS = Path(__file__).resolve().parent / "results" / "cut.json"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
MODELS = ("CycleGAN", "CUT", "FastCUT")
FASTCUT = {"nce_idt": False, "flip_equivariance": True, "lambda_NCE": 10.0}
# The known mapping from A to B: output channel i is 0.9 * input channel (i + 1) mod 3, in [-1, 1].
COLOUR_ROTATION = torch.tensor([[0.0, 0.9, 0.0], [0.0, 0.0, 0.9], [0.9, 0.0, 0.0]])


def build(name: str, sizes: dict[str, int], **settings: Any) -> GANModule:
    """The model ``name`` with the reference defaults of its own losses and the shared network sizes."""
    generator = {"arch": "resnet", "n_blocks": sizes["n_blocks"], "ngf": sizes["ngf"]}
    discriminator = {"arch": "basic", "ndf": sizes["ndf"]}
    common = dict(settings)
    if name == "CycleGAN":
        return CycleGAN(generator, discriminator, **common)
    return CUT(generator, discriminator, **(FASTCUT if name == "FastCUT" else {}), **common)


def trainer(max_iterations: int, callbacks: list[pl.Callback], **settings: Any) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=2 * max_iterations,  # two optimizer steps per iteration, for all three models
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
        **settings,
    )


# ----------------------------------------------------------------------------------------------- time
class IterationClock(pl.Callback):
    """Wall time and this process's CPU time from the end of the warm-up iterations to the end of the
    last one. With one torch thread the CPU time is the work done, whatever else the machine runs."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = (0.0, 0.0)
        self.timed = 0

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        now = (time.perf_counter(), time.process_time())
        if trainer.fit_loop.total_batch_idx + 1 == self.warmup:
            self.start = now
        elif trainer.fit_loop.total_batch_idx + 1 > self.warmup:
            self.end, self.timed = now, self.timed + 1


def seconds_per_iteration(
    name: str, loader: DataLoader, sizes: dict, warmup: int, iters: int
) -> tuple[float, float]:
    """(wall, CPU) seconds per iteration of ``name`` after ``warmup`` iterations."""
    torch.manual_seed(0)
    model = build(name, sizes)
    clock = IterationClock(warmup)
    trainer(warmup + iters, [clock]).fit(model, train_dataloaders=loader)
    assert clock.timed == iters, (clock.timed, iters)
    return tuple((end - start) / iters for start, end in zip(clock.start, clock.end, strict=True))


def measure_time(sizes: dict, warmup: int, iters: int, repeats: int) -> dict[str, Any]:
    loader = DataLoader(SyntheticPairs(warmup + iters, sizes["crop"]), batch_size=1, num_workers=0)
    runs: dict[str, dict[str, list[float]]] = {
        kind: {name: [] for name in MODELS} for kind in ("wall", "cpu")
    }
    for repeat in range(repeats):
        for name in MODELS[repeat % 3 :] + MODELS[: repeat % 3]:
            wall, cpu = seconds_per_iteration(name, loader, sizes, warmup, iters)
            runs["wall"][name].append(wall)
            runs["cpu"][name].append(cpu)
    return {
        f"{kind}_time": summarize(per_model, "seconds_per_iteration", digits=4)
        for kind, per_model in runs.items()
    }


def summarize(runs: dict[str, list[float]], unit: str, digits: int) -> dict[str, Any]:
    """Medians per model and the medians of the per-repeat ratios to CycleGAN."""
    result: dict[str, Any] = {unit: {name: round(statistics.median(v), digits) for name, v in runs.items()}}
    result["ratio_to_cyclegan"] = {
        name: round(statistics.median(a / b for a, b in zip(runs[name], runs["CycleGAN"], strict=True)), 3)
        for name in MODELS[1:]
    }
    result["runs"] = {name: [round(value, digits) for value in values] for name, values in runs.items()}
    return result


# --------------------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match is not None, field
    return int(match.group(1))


class IterationPeak(pl.Callback):
    """Peak resident set during iteration ``index`` (1-based): VmHWM is reset right before it."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.before_kib = self.peak_kib = 0

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.fit_loop.total_batch_idx + 1 == self.index:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
            self.before_kib = _status_kib("VmRSS")

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.fit_loop.total_batch_idx + 1 == self.index:
            self.peak_kib = _status_kib("VmHWM")


def memory_child(name: str, sizes: dict) -> dict[str, float]:
    """Runs in its own process: three iterations of ``name``, the third one measured (MiB)."""
    loader = DataLoader(SyntheticPairs(3, sizes["crop"]), batch_size=1, num_workers=0)
    baseline = _status_kib("VmRSS")
    torch.manual_seed(0)
    model = build(name, sizes)
    peak = IterationPeak(3)
    trainer(3, [peak]).fit(model, train_dataloaders=loader)
    return {"iteration": (peak.peak_kib - peak.before_kib) / 1024, "total": (peak.peak_kib - baseline) / 1024}


def measure_memory(sizes: dict, repeats: int) -> dict[str, Any]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    runs: dict[str, dict[str, list[float]]] = {
        kind: {name: [] for name in MODELS} for kind in ("iteration", "total")
    }
    for repeat in range(repeats):
        for name in MODELS[repeat % 3 :] + MODELS[: repeat % 3]:
            command = [sys.executable, __file__, "--memory-child", name, "--sizes", json.dumps(sizes)]
            command += ["--threads", str(torch.get_num_threads())]
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            values = json.loads(done.stdout.strip().splitlines()[-1])
            for kind in runs:
                runs[kind][name].append(values[kind])
    return {f"{kind}_peak": summarize(per_model, "mib", digits=1) for kind, per_model in runs.items()}


# -------------------------------------------------------------------------------------------- quality
def load_photos(folders: list[str]) -> torch.Tensor:
    """Every photo of the sample folders (all 96x96 RGB) as one (N, 3, 96, 96) tensor in [-1, 1]."""
    paths = sorted(path for folder in folders for path in (SAMPLE / folder).iterdir())
    return torch.stack([read_image(str(path), ImageReadMode.RGB) for path in paths]).float() / 127.5 - 1.0


def colour_transform(images: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", COLOUR_ROTATION, images)


class UnpairedCrops(Dataset):
    """Item i: a random crop (and flip) of a random photo as A, another one, colour-transformed, as B;
    the draws come from a generator seeded by (seed, i), so every model sees the same stream."""

    def __init__(self, photos: torch.Tensor, crop: int, length: int, seed: int) -> None:
        self.photos, self.crop, self.length, self.seed = photos, crop, length, seed

    def __len__(self) -> int:
        return self.length

    def _crop(self, generator: torch.Generator) -> torch.Tensor:
        count, _, height, width = self.photos.shape
        index = int(torch.randint(count, (), generator=generator))
        top = int(torch.randint(height - self.crop + 1, (), generator=generator))
        left = int(torch.randint(width - self.crop + 1, (), generator=generator))
        image = self.photos[index, :, top : top + self.crop, left : left + self.crop]
        return image.flip(2) if torch.rand((), generator=generator) < 0.5 else image

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        real_A = self._crop(generator)
        real_B = colour_transform(self._crop(generator)[None])[0]
        return {"A": real_A, "B": real_B}


def translation_error(
    name: str, sizes: dict, photos: torch.Tensor, tests: torch.Tensor, iters: int, epochs: int, seed: int
) -> float:
    """Train ``name`` for ``iters`` iterations as ``epochs`` epochs, the second half of them with the
    linear decay, on the stream of ``seed``; the mean |G(test) - transform(test)|."""
    pl.seed_everything(seed, verbose=False)
    model = build(name, sizes, n_epochs=epochs // 2, n_epochs_decay=epochs - epochs // 2, pool_seed=seed)
    # each epoch a new seeded permutation of `iters` distinct items, of which it takes iters // epochs
    loader = DataLoader(
        UnpairedCrops(photos, sizes["crop"], iters, seed),
        batch_size=1,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=0,
    )
    run = trainer(iters, [], max_epochs=epochs, limit_train_batches=iters // epochs)
    run.fit(model, train_dataloaders=loader)
    generator = getattr(model, model.generator_names["AtoB"]).eval()
    with torch.no_grad():
        return float((generator(tests) - colour_transform(tests)).abs().mean())


def measure_quality(sizes: dict, iters: int, epochs: int, seeds: list[int]) -> dict[str, Any]:
    photos = load_photos(["trainA", "trainB"])
    margin = (photos.shape[-1] - sizes["crop"]) // 2
    tests = load_photos(["testA", "testB"])[
        ..., margin : margin + sizes["crop"], margin : margin + sizes["crop"]
    ]
    errors: dict[str, list[float]] = {name: [] for name in MODELS}
    for seed in seeds:
        for name in MODELS:
            errors[name].append(translation_error(name, sizes, photos, tests, iters, epochs, seed))
    return {
        "iterations": iters,
        "epochs": epochs,
        "decay_epochs": epochs - epochs // 2,
        "seeds": seeds,
        "test_crops": len(tests),
        "l1_error_to_known_target": {name: [round(e, 4) for e in values] for name, values in errors.items()},
        "mean_l1_error": {name: round(statistics.mean(values), 4) for name, values in errors.items()},
        "identity_l1_error": round(float((tests - colour_transform(tests)).abs().mean()), 4),
        "cut_no_worse_at_every_seed": all(
            c <= g for c, g in zip(errors["CUT"], errors["CycleGAN"], strict=True)
        ),
    }


# ----------------------------------------------------------------------------------------------- main
def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=64, help="crop of the time and memory measurements")
    parser.add_argument("--ngf", type=int, default=64, help="generator width (ndf alike); 64: the reference")
    parser.add_argument("--n-blocks", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=4, help="timed iterations per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-repeats", type=int, default=3)
    parser.add_argument("--quality-crop", type=int, default=64)
    parser.add_argument("--quality-ngf", type=int, default=16)
    parser.add_argument("--quality-iters", type=int, default=800)
    parser.add_argument("--quality-epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: on a shared, loaded machine more spin)"
    )
    parser.add_argument("--memory-child", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, json.loads(args.sizes))))
        return

    sizes = {"crop": args.crop, "ngf": args.ngf, "ndf": args.ngf, "n_blocks": args.n_blocks}
    quality_sizes = {**sizes, "crop": args.quality_crop, "ngf": args.quality_ngf, "ndf": args.quality_ngf}
    pl.seed_everything(0, verbose=False)
    loads = {"start": load_average()}
    started = time.perf_counter()
    time_result = measure_time(sizes, args.warmup, args.iters, args.repeats)
    loads["after_time"] = load_average()
    memory_result = measure_memory(sizes, args.memory_repeats)
    loads["after_memory"] = load_average()
    quality_result = measure_quality(quality_sizes, args.quality_iters, args.quality_epochs, args.seeds)
    loads["end"] = load_average()
    report = {
        "benchmark": "cut",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": f"CPU ({platform.processor() or platform.machine()}), {os.cpu_count()} cores",
        "load_average_1_5_15_min": loads,
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "python": sys.version.split()[0],
        "torch_threads": args.threads,
        "networks": (
            f"resnet G (ngf {sizes['ngf']}, {sizes['n_blocks']} blocks), PatchGAN D (ndf {sizes['ndf']}); "
            "each model with its reference loss defaults (CUT: nce_layers 0,4,8,12,16, 256 patches)"
        ),
        "crop": sizes["crop"],
        "batch_size": 1,
        "goals": {
            "time_ratio": {"CUT": 0.65, "FastCUT": 0.45},
            "memory_ratio": {"CUT": 0.75},
            "quality": "CUT error <= CycleGAN error at every seed",
        },
        "time": {"warmup_iterations": args.warmup, "timed_iterations": args.iters, **time_result},
        "memory": {"repeats": args.memory_repeats, **memory_result},
        "quality": {"crop": quality_sizes["crop"], "ngf": quality_sizes["ngf"], **quality_result},
        "goals_met": {
            "time_CUT": time_result["cpu_time"]["ratio_to_cyclegan"]["CUT"] <= 0.65,
            "time_FastCUT": time_result["cpu_time"]["ratio_to_cyclegan"]["FastCUT"] <= 0.45,
            "memory_CUT": memory_result["total_peak"]["ratio_to_cyclegan"]["CUT"] <= 0.75,
            "quality_CUT": quality_result["cut_no_worse_at_every_seed"],
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
