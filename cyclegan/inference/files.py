"""Translate image files: find the inputs, mirror their relative paths under the output folder, never
overwrite an input, skip (and count) files that cannot be decoded."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from tqdm import tqdm

from cyclegan.data.decode import DEFAULT_MAX_IMAGE_PIXELS, BadImageError
from cyclegan.data.files import IMAGE_EXTENSIONS, find_local_images
from cyclegan.inference.images import (
    DEFAULT_JPEG_QUALITY,
    NetworkImage,
    network_to_pil,
    read_network_image,
    write_image,
)
from cyclegan.inference.output_paths import check_output_folder, file_identity
from cyclegan.inference.translation import run_batch

NOT_REGULAR = "not a regular file (a FIFO, socket, device or broken link): never read"


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
        """One line of counts, then one line per skipped file (bytes of a name that is not UTF-8 shown
        as \\xNN, so the text prints on any terminal)."""
        lines = [f"translated {len(self.written)} image(s), skipped {len(self.skipped)}"]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class FoundInputs(NamedTuple):
    """The input images, and entries named like images that are not regular files (skipped)."""

    files: list[InputFile]
    not_regular: list[Path]


def find_inputs(spec: str | Path) -> FoundInputs:
    """A file, a folder (searched recursively for image extensions, folder symlinks followed) or a glob
    pattern (``**`` allowed). Only regular files are read: a FIFO named like an image would block.

    Relative paths are taken from the folder, or from the part of the pattern before its first wildcard.
    """
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file():
        return FoundInputs([InputFile(path, Path(path.name))], [])
    if path.is_dir():
        listing = find_local_images(path)
        files = [Path(name) for name in listing.images]
        return FoundInputs(
            [InputFile(p, p.relative_to(path)) for p in files], [Path(name) for name in listing.not_regular]
        )
    if path.exists() or path.is_symlink():
        raise ValueError(f"input {text!r} is not a regular file or a folder: {NOT_REGULAR}")
    if glob.has_magic(text):
        root = Path(os.path.dirname(text[: min(text.index(c) for c in "*?[" if c in text)]))
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
        return FoundInputs(
            [InputFile(p, p.relative_to(root)) for p in matches if p.is_file()],
            [p for p in matches if not p.is_file() and not p.is_dir()],
        )
    raise FileNotFoundError(f"input {text!r} is not a file, a folder or a glob pattern that exists")


def plan_outputs(inputs: list[InputFile], output_dir: Path, extension: str | None) -> list[Path]:
    """Output path of each input; raise if any would overwrite an input file."""
    check_output_folder(output_dir)
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
    # compared as files, not names: a symlink or a hard link to an input is that input
    input_files = {file_identity(item.path) for item in inputs}
    clashes = [out for out in outputs if file_identity(out) in input_files - {None}]
    if clashes:
        raise ValueError(
            f"refusing to overwrite input files: {len(clashes)} output(s) would replace an input "
            f"(first: {clashes[0]}); choose another output folder or output extension"
        )
    return outputs


def _decoded(
    inputs: list[InputFile],
    input_nc: int,
    resize: int | None,
    max_pixels: int,
    report: TranslationReport,
) -> Iterator[tuple[int, NetworkImage | None]]:
    """Decode inputs one by one; a file that cannot be used is recorded in ``report`` and yields None."""
    for index, item in enumerate(inputs):
        try:
            decoded = read_network_image(item.path, input_nc, resize=resize, max_pixels=max_pixels)
        except BadImageError as error:
            report.skipped.append((item.path, error.reason))
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
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
) -> TranslationReport:
    """Translate ``inputs`` into ``outputs``, batching consecutive images of equal size; images over
    ``max_pixels`` are skipped, JPEG outputs written at ``jpeg_quality``."""
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
            write_image(network_to_pil(result, image.alpha), outputs[index], jpeg_quality=jpeg_quality)
            report.written.append(outputs[index])
        pending.clear()

    with tqdm(total=len(inputs), desc=description, unit="img", disable=not progress) as bar:
        for index, image in _decoded(inputs, input_nc, resize, max_pixels, report):
            bar.update(1)
            if image is None:
                continue
            if pending and (len(pending) == batch_size or pending[0][1].tensor.shape != image.tensor.shape):
                flush()
            pending.append((index, image))
        if pending:
            flush()
    return report
