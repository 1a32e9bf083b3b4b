"""Translate image files: find the inputs, mirror their relative paths under the output folder, never
overwrite an input, skip (and count) files that cannot be decoded."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from cyclegan.inference.images import (
    IMAGE_EXTENSIONS,
    NetworkImage,
    network_to_pil,
    pil_to_network,
    read_image,
    resize_shorter_side,
    write_image,
)
from cyclegan.inference.translation import run_batch


@dataclass(frozen=True)
class InputFile:
    """An input image and its path relative to the input root (kept under the output folder)."""

    path: Path
    relative: Path


@dataclass
class TranslationReport:
    """What a run did: files written, and the files skipped with the reason."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"translated {len(self.written)} image(s), skipped {len(self.skipped)}"]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def find_inputs(spec: str | Path) -> list[InputFile]:
    """A file, a folder (searched recursively for image extensions) or a glob pattern (``**`` allowed).

    Relative paths are taken from the folder, or from the part of the pattern before its first wildcard.
    """
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file():
        return [InputFile(path, Path(path.name))]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_image_name(p))
        return [InputFile(p, p.relative_to(path)) for p in files]
    if glob.has_magic(text):
        root = Path(os.path.dirname(text[: min(text.index(c) for c in "*?[" if c in text)]))
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        return [InputFile(p, p.relative_to(root)) for p in files]
    raise FileNotFoundError(f"input {text!r} is not a file, a folder or a glob pattern that exists")


def plan_outputs(inputs: list[InputFile], output_dir: Path, extension: str | None) -> list[Path]:
    """Output path of each input; raise if any would overwrite an input file."""
    if extension is not None and not extension.startswith("."):
        extension = "." + extension
    if extension is not None and extension.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(
            f"output extension {extension!r} is not an image format; use one of {IMAGE_EXTENSIONS}"
        )
    outputs = [
        output_dir / (item.relative if extension is None else item.relative.with_suffix(extension))
        for item in inputs
    ]
    first_input: dict[Path, Path] = {}
    for item, out in zip(inputs, outputs):
        earlier = first_input.setdefault(out, item.path)
        if earlier != item.path:
            raise ValueError(
                f"inputs {earlier} and {item.path} would both be written to {out}; keep each input's "
                "format (output_ext=null) or rename one of them"
            )
    input_paths = {item.path.resolve() for item in inputs}
    clashes = [out for out in outputs if out.resolve() in input_paths]
    if clashes:
        raise ValueError(
            f"refusing to overwrite input files: {len(clashes)} output(s) would replace an input "
            f"(first: {clashes[0]}); choose another output folder or output extension"
        )
    return outputs


def _decoded(
    inputs: list[InputFile], input_nc: int, resize: int | None, report: TranslationReport
) -> Iterator[tuple[int, NetworkImage | None]]:
    """Decode inputs one by one; a file that cannot be read is recorded in ``report`` and yields None."""
    for index, item in enumerate(inputs):
        try:
            image = read_image(item.path)
            if resize is not None:
                image = resize_shorter_side(image, resize)
            decoded = pil_to_network(image, input_nc)
        except (OSError, ValueError, SyntaxError) as error:
            report.skipped.append((item.path, f"{type(error).__name__}: {error}"))
            decoded = None
        yield index, decoded


def translate_files(
    generator: nn.Module,
    inputs: list[InputFile],
    outputs: list[Path],
    *,
    batch_size: int = 1,
    precision: str = "32",
    resize: int | None = None,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    progress: bool = True,
    description: str = "translate",
) -> TranslationReport:
    """Translate ``inputs`` into ``outputs``, batching consecutive images of equal size."""
    report = TranslationReport()
    input_nc = int(generator.input_nc)
    pending: list[tuple[int, NetworkImage]] = []

    def flush() -> None:
        batch = torch.stack([image.tensor for _, image in pending])
        try:
            results = run_batch(
                generator, batch, precision=precision, tile_size=tile_size, tile_overlap=tile_overlap
            )
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as error:  # e.g. an image smaller than the network's padding allows
            height, width = batch.shape[-2:]
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            for index, _ in pending:
                report.skipped.append(
                    (inputs[index].path, f"the generator cannot translate a {width}x{height} image: {reason}")
                )
            pending.clear()
            return
        for (index, image), result in zip(pending, results):
            write_image(network_to_pil(result, image.alpha), outputs[index])
            report.written.append(outputs[index])
        pending.clear()

    with tqdm(total=len(inputs), desc=description, unit="img", disable=not progress) as bar:
        for index, image in _decoded(inputs, input_nc, resize, report):
            bar.update(1)
            if image is None:
                continue
            if pending and (len(pending) == batch_size or pending[0][1].tensor.shape != image.tensor.shape):
                flush()
            pending.append((index, image))
        if pending:
            flush()
    return report
