"""Hostile files in a training folder: names that are not UTF-8, FIFOs, folder symlinks (and loops) and
damaged PNGs that crash torchvision's decoder. Real files on disk, real DataLoaders and a real Trainer;
a possible segfault runs in a subprocess."""

from __future__ import annotations

import logging
import os
import random
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
from PIL import Image

from cyclegan.data import UnpairedImageDataModule
from cyclegan.data.files import PathTable
from cyclegan.data.png_check import png_damage
from cyclegan.model import CycleGAN

NON_UTF8_NAME = b"caf\xe9.jpg"  # Latin-1 e-acute: a valid Linux file name, not valid UTF-8


def write_jpeg(path: Path | str | bytes, seed: int, size: int = 40) -> None:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    with open(path, "wb") as file:
        Image.fromarray(pixels).save(file, "JPEG")


def make_domains(root: Path, count: int = 2) -> None:
    for split in ("trainA", "trainB"):
        (root / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            write_jpeg(root / split / f"{index}.jpg", seed=index + 10 * len(split))


def datamodule(root: Path, **options) -> UnpairedImageDataModule:
    settings = {"load_size": 36, "crop_size": 32, "num_workers": 0, "batch_size": 1, "serial_batches": True}
    return UnpairedImageDataModule(str(root), **{**settings, **options})


def png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_file(width: int, height: int, rows: bytes, *, idat_crc: int | None = None) -> bytes:
    """An 8-bit RGB PNG with the given (filtered) row bytes, compressed as one IDAT chunk."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    image_data = png_chunk(b"IDAT", zlib.compress(rows), idat_crc)
    return b"\x89PNG\r\n\x1a\n" + header + image_data + png_chunk(b"IEND", b"")


def rows_of(width: int, count: int, filter_type: int = 0) -> bytes:
    return b"".join(bytes([filter_type]) + bytes(range(256))[: width * 3] for _ in range(count))


def damaged_pngs() -> dict[str, bytes]:
    """Each a PNG that crashed torchvision 0.29.1 (exit 139, "libpng error: ...")."""
    whole = zlib.compress(rows_of(20, 20))
    cut_stream = png_chunk(b"IDAT", whole[: len(whole) - 6])  # rows all there, the deflate stream cut
    head = png_file(20, 20, b"")[:33]
    return {
        "claims_300x300_holds_2_rows": png_file(300, 300, rows_of(300, 2)),
        "claims_2x2_holds_1_row": png_file(2, 2, rows_of(2, 1)),
        "idat_crc_mismatch": png_file(20, 20, rows_of(20, 20), idat_crc=1),
        "unknown_row_filter": png_file(20, 20, rows_of(20, 20, filter_type=9)),
        "corrupt_deflate": head + png_chunk(b"IDAT", b"\x78\x9c" + b"\xff" * 50) + png_chunk(b"IEND", b""),
        "unterminated_deflate": head + cut_stream + png_chunk(b"IEND", b""),
    }


def run_python(code: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


# ------------------------------------------------------------------------------------ damaged PNGs
def test_damaged_pngs_are_refused_by_the_decoder_not_a_crash(tmp_path):
    for name, data in damaged_pngs().items():
        (tmp_path / f"{name}.png").write_bytes(data)
    run = run_python(
        f"""
        from pathlib import Path
        from cyclegan.data.decode import BadImageError, decode_image_bytes
        for path in sorted(Path({str(tmp_path)!r}).iterdir()):
            try:
                decode_image_bytes(path.read_bytes(), str(path), 3)
                print("decoded", path.name)
            except BadImageError as error:
                print("refused", path.name, error.reason)
        """
    )
    assert run.returncode == 0, f"the decoder crashed (exit {run.returncode}): {run.stderr[-2000:]}"
    lines = run.stdout.splitlines()
    assert len(lines) == len(damaged_pngs())
    assert all(line.startswith("refused") and "damaged PNG" in line for line in lines), lines


def _mutations(seed: int, count: int) -> list[bytes]:
    """PNGs of random sizes, depths, colour types and interlacing, with random damage to their image
    data (cut rows, wrong filters, cut streams, extra bytes, a wrong size in the header)."""
    rng = random.Random(seed)
    files = []
    for _ in range(count):
        width, height = rng.randrange(1, 30), rng.randrange(1, 30)
        depth, colour = rng.choice([(8, 2), (8, 0), (1, 0), (16, 2), (8, 6), (4, 3), (8, 4)])
        interlace = rng.randrange(2)
        samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
        row_bytes = (width * depth * samples + 7) // 8
        rows = b"".join(
            bytes([rng.choice([0, 1, 2, 3, 4, 4, 5]) if rng.random() < 0.02 else rng.randrange(5)])
            + rng.randbytes(row_bytes)
            for _ in range(height * (2 if interlace else 1))
        )
        damage = rng.randrange(4)
        if damage == 0:
            rows = rows[: rng.randrange(len(rows) + 1)]
        elif damage == 1:
            height += rng.choice([-1, 1]) if height > 1 else 1
        stream = zlib.compress(rows)
        if damage == 2:
            stream = stream[: rng.randrange(1, len(stream))]
        header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
        palette = png_chunk(b"PLTE", bytes(range(48))) if colour == 3 else b""
        files.append(
            b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", header)
            + palette
            + png_chunk(b"IDAT", stream)
            + png_chunk(b"IEND", b"")
        )
    return files


def test_every_png_the_check_passes_decodes_in_torchvision_without_a_crash(tmp_path):
    """The check against the decoder itself: what it lets through must not crash torchvision."""
    passed = [data for data in _mutations(seed=3, count=160) if png_damage(data) is None]
    assert 20 < len(passed) < 140  # both outcomes are exercised
    for index, data in enumerate(passed):
        (tmp_path / f"{index:03d}.png").write_bytes(data)
    run = run_python(
        f"""
        from pathlib import Path
        import torch
        from torchvision.io import decode_image
        for path in sorted(Path({str(tmp_path)!r}).iterdir()):
            decode_image(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8))
        print("all decoded")
        """
    )
    assert run.returncode == 0 and "all decoded" in run.stdout, run.stderr[-2000:]


def test_a_damaged_png_in_training_is_skipped_and_counted(tmp_path):
    make_domains(tmp_path)
    (tmp_path / "trainA" / "damaged.png").write_bytes(damaged_pngs()["claims_300x300_holds_2_rows"])
    run = run_python(
        f"""
        from cyclegan.data import UnpairedImageDataModule
        dm = UnpairedImageDataModule({str(tmp_path)!r}, load_size=36, crop_size=32, num_workers=0,
                                     batch_size=1, serial_batches=True)
        dm.setup("fit")
        for batch in dm.train_dataloader():
            dm.on_before_batch_transfer(batch, 0)
        print("skipped", dm.skipped)
        """
    )
    assert run.returncode == 0, f"training crashed (exit {run.returncode}): {run.stderr[-2000:]}"
    assert "skipped 1" in run.stdout
    assert "damaged.png" in run.stderr and "damaged PNG" in run.stderr


def test_every_data_module_stands_alone_and_decoding_leaves_lightning_out():
    """cyclegan.data exports lazily: its decoder and file listing (which inference uses) load without
    Lightning, and no data module imports another cyclegan package (only the base module of setting
    errors, which every layer may use)."""
    run = run_python(
        """
        import importlib, pkgutil, sys
        import cyclegan.data.decode, cyclegan.data.files
        assert "pytorch_lightning" not in sys.modules, "decode/files pulled in Lightning"
        import cyclegan.data
        for module in pkgutil.iter_modules(cyclegan.data.__path__):
            importlib.import_module(f"cyclegan.data.{module.name}")
        for name in cyclegan.data.__all__:
            getattr(cyclegan.data, name)
        print(sorted(m for m in sys.modules if m.split(".")[:2] not in (["cyclegan"], ["cyclegan", "data"])
                     and m.startswith("cyclegan") and m != "cyclegan.errors"))
        """
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


# ------------------------------------------------------------------------------- names and file types
def test_path_table_keeps_names_that_are_not_utf8():
    names = [os.fsdecode(b"/data/" + NON_UTF8_NAME), "/data/plain.jpg", "/data/\u00e9t\u00e9.png"]
    assert list(PathTable(names)) == names


def test_a_file_name_that_is_not_utf8_trains(tmp_path):
    root = tmp_path / "data"
    make_domains(root)
    write_jpeg(bytes(root / "trainA") + b"/" + NON_UTF8_NAME, seed=7)
    seen: list[str] = []

    class RecordPaths(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            seen.extend(batch["A_paths"])

    dm = datamodule(root, num_workers=2)
    model = CycleGAN({"arch": "resnet", "n_blocks": 1, "ngf": 4}, {"arch": "basic", "ndf": 4}, pool_size=2)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RecordPaths()],
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert os.fsencode(seen[-1]).endswith(NON_UTF8_NAME)  # listed, read, decoded and trained on
    assert len(seen) == 3 and dm.skipped == 0


def test_a_fifo_named_like_an_image_is_skipped_when_listing_not_read(tmp_path, caplog):
    make_domains(tmp_path)
    os.mkfifo(tmp_path / "trainA" / "pipe.png")  # opening it for reading would block forever
    dm = datamodule(tmp_path)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert [Path(path).name for path in dm.train_dataset.domain_a.paths] == ["0.jpg", "1.jpg"]
    assert any("pipe.png" in r.getMessage() and "not regular files" in r.getMessage() for r in caplog.records)
    assert sum(1 for _ in dm.train_dataloader()) == 2


def test_images_in_a_symlinked_folder_are_found_and_a_link_loop_ends(tmp_path):
    root = tmp_path / "data"
    make_domains(root, count=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_jpeg(elsewhere / "far.jpg", seed=3)
    (root / "trainB" / "linked").symlink_to(elsewhere)
    (elsewhere / "loop").symlink_to(root / "trainB")  # trainB/linked/loop/linked/... would never end
    (root / "trainB" / "again").symlink_to(elsewhere)  # the same real folder by a second name
    (root / "trainB" / "0.jpg").unlink()  # only the linked folder holds images now
    dm = datamodule(root)
    dm.setup("fit")
    assert [Path(path).relative_to(root) for path in dm.train_dataset.domain_b.paths] == [
        Path("trainB/again/far.jpg")
    ]
    assert next(iter(dm.train_dataloader()))["B"].shape == (1, 3, 32, 32)


@pytest.mark.slow
def test_cyclegan_train_runs_on_a_folder_holding_every_hostile_file_at_once(tmp_path):
    """The console script end to end: trainB's images only in a symlinked folder, and in trainA a FIFO,
    a damaged PNG and a name that is not UTF-8 next to ordinary images."""
    root = tmp_path / "data"
    make_domains(root, count=2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for path in (root / "trainB").iterdir():
        path.rename(elsewhere / path.name)
    (root / "trainB" / "linked").symlink_to(elsewhere)
    os.mkfifo(root / "trainA" / "pipe.png")
    (root / "trainA" / "damaged.png").write_bytes(damaged_pngs()["claims_2x2_holds_1_row"])
    write_jpeg(bytes(root / "trainA") + b"/" + NON_UTF8_NAME, seed=5)
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("cyclegan-train")),
            "data=folder",
            f"data.root={root}",
            "data.load_size=36",
            "data.crop_size=32",
            "data.num_workers=2",
            "data.serial_batches=true",
            "model.generator.ngf=4",
            "model.generator.n_blocks=1",
            "model.discriminator.ndf=4",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "trainer.limit_val_batches=0",
            "trainer.enable_progress_bar=false",
            "logger=csv",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        timeout=300,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    printed = (run.stdout + run.stderr).decode(errors="replace")  # Hydra logs warnings to stdout
    assert run.returncode == 0, printed[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert "pipe.png" in printed and "not regular files" in printed
    assert "damaged.png" in printed and "damaged PNG" in printed
