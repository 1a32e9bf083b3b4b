"""Evaluate generators on a test split: translate ``{split}A`` (``{split}B``) and score it against the
real images of the other domain with FID and KID. A root in the reference's aligned layout (pix2pix:
``{split}/`` images holding A on the left half and B on the right) serves both domains from its halves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from cyclegan.data.decode import BadImageError
from cyclegan.data.domains import DOMAINS
from cyclegan.inference.files import NOT_REGULAR, find_inputs
from cyclegan.inference.images import read_network_image
from cyclegan.inference.metrics import DistributionScores, score_translations
from cyclegan.inference.translation import run_batch


def directions_for(direction: str) -> list[str]:
    """``"both"`` -> both directions; otherwise the one named (checked)."""
    if direction == "both":
        return list(DOMAINS)
    if direction not in DOMAINS:
        raise ValueError(f"direction must be AtoB, BtoA or both, got {direction!r}")
    return [direction]


@dataclass(frozen=True)
class SplitSource:
    """Where a domain's test images are: the files of ``folder``, or with ``half`` (0 left, 1 right) that
    half of each of its aligned images."""

    folder: Path
    half: int | None = None


def split_folder(root: str | Path, split: str, domain: str) -> SplitSource:
    """``root/{split}{domain}``, else the aligned ``root/{split}`` (A: left halves, B: right halves)."""
    folder, aligned = Path(root) / f"{split}{domain}", Path(root) / split
    if folder.is_dir():
        return SplitSource(folder)
    if aligned.is_dir():
        return SplitSource(aligned, "AB".index(domain))
    raise FileNotFoundError(
        f"evaluation needs the folder {folder}, or {aligned} of aligned pairs (data.root={root}, "
        f"split={split})"
    )


def image_batches(
    folder: Path,
    channels: int,
    *,
    batch_size: int,
    resize: int | None,
    max_images: int | None,
    skipped: list[tuple[Path, str]],
    half: int | None = None,
) -> Iterator[torch.Tensor]:
    """(N, C, H, W) batches in [-1, 1] of the folder's images (sorted), grouping equal sizes; with ``half``
    (0 left, 1 right) that half of each image (``resize`` applies to the whole image first)."""
    found = find_inputs(folder)
    skipped.extend((path, NOT_REGULAR) for path in found.not_regular)
    pending: list[torch.Tensor] = []
    for item in found.files[:max_images]:
        try:
            tensor = read_network_image(item.path, channels, resize=resize).tensor
        except BadImageError as error:
            skipped.append((item.path, error.reason))
            continue
        if half is not None:
            width = tensor.shape[-1] // 2
            tensor = tensor[..., half * width : (half + 1) * width]
        if pending and (len(pending) == batch_size or pending[0].shape != tensor.shape):
            yield torch.stack(pending)
            pending = []
        pending.append(tensor)
    if pending:
        yield torch.stack(pending)


def evaluate_direction(
    generator: nn.Module,
    root: str | Path,
    direction: str,
    extractor: nn.Module,
    *,
    split: str = "test",
    batch_size: int = 8,
    precision: str = "32",
    resize: int | None = None,
    max_images: int | None = None,
    kid_subsets: int = 100,
    progress: bool = False,
) -> tuple[DistributionScores, list[tuple[Path, str]]]:
    """FID/KID of ``generator``'s translations of the source split against the target split.

    ``generator`` takes (N, C, H, W) in [-1, 1] of any size (a `load_generator` module). Returns the
    scores and the files that could not be read.
    """
    source, target = DOMAINS[direction]
    source_split, target_split = split_folder(root, split, source), split_folder(root, split, target)
    skipped: list[tuple[Path, str]] = []
    options = {"batch_size": batch_size, "resize": resize, "max_images": max_images, "skipped": skipped}
    real = tqdm(
        image_batches(target_split.folder, int(generator.output_nc), half=target_split.half, **options),
        desc=f"real {target}",
        disable=not progress,
    )
    sources = tqdm(
        image_batches(source_split.folder, int(generator.input_nc), half=source_split.half, **options),
        desc=f"translate {direction}",
        disable=not progress,
    )
    fakes = (run_batch(generator, batch, precision=precision) for batch in sources)
    return score_translations(extractor, real, fakes, kid_subsets=kid_subsets), skipped


def format_table(results: dict[str, DistributionScores]) -> str:
    """A plain-text table: one row per direction."""
    header = f"{'direction':<10} {'FID':>10} {'KID':>12} {'KID std':>10} {'real':>6} {'fake':>6}"
    rows = [
        f"{name:<10} {s.fid:>10.3f} {s.kid_mean:>12.5f} {s.kid_std:>10.5f} {s.num_real:>6} {s.num_fake:>6}"
        for name, s in results.items()
    ]
    return "\n".join([header, "-" * len(header), *rows])


def write_json(results: dict[str, DistributionScores], path: str | Path, **context: object) -> Path:
    """Write the scores (and ``context`` such as the checkpoint path) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**context, "metrics": {direction: asdict(scores) for direction, scores in results.items()}}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
