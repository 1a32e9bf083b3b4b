"""Benchmark the training image pipeline against the reference's PIL pipeline, in one run.

Both pipelines do the full CycleGAN training transform on 256x256 JPEG files: read, decode, resize to
286x286 (bicubic), random 256x256 crop, random horizontal flip, scale to [-1, 1].
- ours: cyclegan.data (torchvision.io decode, transforms.v2 on uint8 tensors with antialias, seeded
  torch.Generator per sample)
- reference: PIL open + convert('RGB'), then torchvision.transforms Resize(BICUBIC), RandomCrop,
  RandomHorizontalFlip, ToTensor, Normalize(0.5, 0.5) on the PIL image, as the reference does.

Measured per worker (one process, one thread) and through a DataLoader with N worker processes.
The JPEGs are the shipped sample photos (data/sample, 96x96) scaled up to 256x256 with fine noise
added back so they carry photo-like detail. Prints JSON and writes benchmarks/results/data.json.

    python benchmarks/data.py                 # 2 workers (this machine has 2 cores)
    python benchmarks/data.py --workers 4 --images 512
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as reference_transforms

from cyclegan.data import UnpairedImageDataModule
from cyclegan.data.decode import decode_image_bytes
from cyclegan.data.sampling import sample_generator
from cyclegan.data.transforms import TrainTransform

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "data.json"
SAMPLE = ROOT / "data" / "sample"


def make_jpegs(folder: Path, count: int) -> list[Path]:
    """256x256 JPEGs (quality 90) made from the sample photos, with fine detail added back."""
    sources = sorted(SAMPLE.glob("train[AB]/*.jpg"))
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        with Image.open(sources[index % len(sources)]) as small:
            large = np.asarray(small.convert("RGB").resize((256, 256), Image.Resampling.BICUBIC), np.float64)
        detailed = np.clip(large + rng.normal(0, 6, large.shape), 0, 255).astype(np.uint8)
        path = folder / f"{index:04d}.jpg"
        Image.fromarray(detailed).save(path, quality=90)
        paths.append(path)
    return paths


class OursDataset(Dataset):
    """One image per item through cyclegan.data's decode and training transform."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = [str(p) for p in paths]
        self.transform = TrainTransform("resize_and_crop", 286, 256, flip=True)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with open(self.paths[index], "rb") as file:
            image = decode_image_bytes(file.read(), self.paths[index], 3)
        return self.transform(image, sample_generator(0, 0, 0, index))


class ReferenceDataset(Dataset):
    """One image per item through the reference's PIL pipeline."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = [str(p) for p in paths]
        self.transform = reference_transforms.Compose(
            [
                reference_transforms.Resize([286, 286], reference_transforms.InterpolationMode.BICUBIC),
                reference_transforms.RandomCrop(256),
                reference_transforms.RandomHorizontalFlip(),
                reference_transforms.ToTensor(),
                reference_transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(Image.open(self.paths[index]).convert("RGB"))


def per_worker(
    datasets: dict[str, Dataset], repeats: int
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Images per second of each dataset in this process with one thread, plus its outputs.

    Passes alternate between the pipelines and the best pass of each counts, so load from other
    processes on the machine hits both alike.
    """
    torch.set_num_threads(1)
    best = dict.fromkeys(datasets, float("inf"))
    outputs: dict[str, list[torch.Tensor]] = {}
    for name, dataset in datasets.items():  # warm up caches and lazy imports
        outputs[name] = [dataset[i] for i in range(min(16, len(dataset)))]
    for _ in range(repeats):
        for name, dataset in datasets.items():
            start = time.perf_counter()
            outputs[name] = [dataset[i] for i in range(len(dataset))]
            best[name] = min(best[name], time.perf_counter() - start)
    rates = {name: len(datasets[name]) / seconds for name, seconds in best.items()}
    return rates, {name: torch.stack(values) for name, values in outputs.items()}


def with_workers(
    datasets: dict[str, Dataset], workers: int, batch_size: int, repeats: int
) -> dict[str, float]:
    """Images per second through DataLoaders with `workers` persistent processes, passes alternating."""
    loaders = {
        name: DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=True)
        for name, dataset in datasets.items()
    }
    best = dict.fromkeys(datasets, float("inf"))
    for loader in loaders.values():  # warm-up pass starts the workers
        for _ in loader:
            pass
    for _ in range(repeats):
        for name, loader in loaders.items():
            start = time.perf_counter()
            for _ in loader:
                pass
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(datasets[name]) / seconds for name, seconds in best.items()}


def datamodule_pairs_per_second(root: Path, workers: int, repeats: int) -> float:
    """Training pairs (A and B, each decoded and transformed) per second through the real datamodule."""
    dm = UnpairedImageDataModule(str(root), num_workers=workers, batch_size=4, pin_memory=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    for _ in loader:
        pass
    best = float("inf")
    for epoch in range(1, repeats + 1):
        dm.set_epoch(epoch)
        start = time.perf_counter()
        count = sum(len(batch["A_paths"]) for batch in loader)
        best = min(best, time.perf_counter() - start)
    return count / best


def stats(outputs: torch.Tensor) -> dict[str, float]:
    return {"mean": round(float(outputs.mean()), 4), "std": round(float(outputs.std()), 4)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="number of 256x256 JPEG files")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the best one counts")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as workdir:
        folder = Path(workdir) / "jpegs"
        folder.mkdir()
        paths = make_jpegs(folder, args.images)
        datasets = {"ours": OursDataset(paths), "reference_pil": ReferenceDataset(paths)}
        rates, outputs = per_worker(datasets, args.repeats)
        loader_rates = with_workers(datasets, args.workers, 8, args.repeats)
        root = Path(workdir) / "pairs"
        for split in ("trainA", "trainB"):
            (root / split).mkdir(parents=True)
            for path in paths[: len(paths) // 2] if split == "trainA" else paths[len(paths) // 2 :]:
                os.link(path, root / split / path.name)
        pairs = datamodule_pairs_per_second(root, args.workers, args.repeats)

    result = {
        "benchmark": "data",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu_cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "versions": {
            "torch": torch.__version__,
            "torchvision": _torchvision_version(),
            "pillow": Image.__version__,
        },
        "task": "256x256 JPEG: decode, bicubic resize 286, random crop 256, random flip, to [-1, 1]",
        "images": args.images,
        "per_worker_images_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "per_worker_speedup": round(rates["ours"] / rates["reference_pil"], 2),
        f"{args.workers}_workers_images_per_s": {name: round(rate, 1) for name, rate in loader_rates.items()},
        f"{args.workers}_workers_speedup": round(loader_rates["ours"] / loader_rates["reference_pil"], 2),
        "datamodule_pairs_per_s": {"workers": args.workers, "batch_size": 4, "pairs_per_s": round(pairs, 1)},
        "output_stats": {name: stats(values) for name, values in outputs.items()},
        "goal": "per-worker speedup >= 1.5 with the same output statistics",
    }
    print(json.dumps(result, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")


def _torchvision_version() -> str:
    import torchvision

    return torchvision.__version__


if __name__ == "__main__":
    main()
