"""pix2pix dataset downloads (``pix2pix/NAME``: NAME.tar.gz under their own base URL) against a real HTTP
server on 127.0.0.1 serving archives made here: a good archive lands and trains, resumes work, and unsafe
archives (absolute paths, ``..``, links, devices, clashes, bombs, too large, corrupt) are refused before
anything is written, with nothing left behind."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data_download import ZipServer, leftovers, server  # noqa: F401  (server is a fixture)

from cyclegan.cli.download import main as download_cli
from cyclegan.data import PIX2PIX_DATASET_NAMES, DatasetDownloadError, PairedImageDataModule, download_dataset
from cyclegan.data.download import PIX2PIX_BASE_URL, PIX2PIX_BASE_URL_ENV, dataset_url


def aligned_jpeg(seed: int) -> bytes:
    pixels = (np.random.default_rng(seed).random((24, 48, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def add_file(bundle: tarfile.TarFile, name: str, data: bytes, **fields) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    bundle.addfile(info, io.BytesIO(data))


def dataset_tar(name: str, extra=None) -> bytes:
    """A tar.gz laid out like the reference's: NAME/train, NAME/val of aligned JPEGs (+ ``extra(bundle)``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for split, count in (("train", 3), ("val", 2)):
            for index in range(count):
                add_file(bundle, f"{name}/{split}/{index}.jpg", aligned_jpeg(index))
        if extra is not None:
            extra(bundle)
    return buffer.getvalue()


def serve(name: str, data: bytes) -> None:
    ZipServer.files[f"datasets/{name}.tar.gz"] = data


def test_a_pix2pix_archive_lands_complete_and_trains(server, tmp_path):  # noqa: F811
    serve("facades", dataset_tar("facades"))
    target = download_dataset("pix2pix/facades", tmp_path, server, progress=False)
    assert target == tmp_path / "pix2pix" / "facades"
    assert leftovers(tmp_path / "pix2pix") == ["facades"]  # no .part, no staging folder
    assert sorted(path.name for path in target.iterdir()) == ["train", "val"]
    dm = PairedImageDataModule(str(target), load_size=24, crop_size=16, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["A"].shape == batch["B"].shape == (1, 3, 16, 16) and len(dm.val_dataset) == 2


def test_resume_and_the_command_line(server, tmp_path, capsys):  # noqa: F811
    data = dataset_tar("maps")
    serve("maps", data)
    ZipServer.cut["datasets/maps.tar.gz"] = [500]
    download_dataset("pix2pix/maps", tmp_path, server, progress=False, attempts=2)
    assert ZipServer.ranges == [None, "bytes=500-"]
    serve("night2day", dataset_tar("night2day"))
    assert (
        download_cli(["pix2pix/night2day", "--root", str(tmp_path), "--base-url", server, "--no-progress"])
        == 0
    )
    assert capsys.readouterr().out.strip() == str(tmp_path / "pix2pix" / "night2day")
    assert download_cli(["pix2pix/cityscapes", "--root", str(tmp_path), "--no-progress"]) == 1
    assert "cannot be downloaded (its license forbids redistribution)" in capsys.readouterr().err


def test_names_and_urls(monkeypatch):
    assert set(PIX2PIX_DATASET_NAMES) == {
        f"pix2pix/{name}" for name in ("facades", "maps", "edges2shoes", "edges2handbags", "night2day")
    }
    monkeypatch.delenv(PIX2PIX_BASE_URL_ENV, raising=False)
    assert dataset_url("pix2pix/edges2shoes") == f"{PIX2PIX_BASE_URL}/edges2shoes.tar.gz"
    assert PIX2PIX_BASE_URL == "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
    monkeypatch.setenv(PIX2PIX_BASE_URL_ENV, "http://mirror/p2p/")
    assert dataset_url("pix2pix/facades") == "http://mirror/p2p/facades.tar.gz"
    assert dataset_url("facades", "http://mirror/c") == "http://mirror/c/facades.zip"  # CycleGAN's facades


def _symlink(bundle):
    add_file(bundle, "facades/train/link.jpg", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")


def _hardlink(bundle):
    add_file(bundle, "facades/train/hard.jpg", b"", type=tarfile.LNKTYPE, linkname="facades/train/0.jpg")


def _device(bundle):
    add_file(bundle, "facades/train/dev", b"", type=tarfile.CHRTYPE, devmajor=1, devminor=3)


def _fifo(bundle):
    add_file(bundle, "facades/train/pipe", b"", type=tarfile.FIFOTYPE)


def _clash(bundle):
    add_file(bundle, "facades/val", b"a file where a folder is")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (lambda b: add_file(b, "/tmp/escaped_abs_p2p.txt", b"x"), re.escape("unsafe (absolute path)")),
        (
            lambda b: add_file(b, "facades/../../escaped_p2p.txt", b"x"),
            re.escape("unsafe (path escapes the target folder)"),
        ),
        (_symlink, re.escape("unsafe (symbolic link)")),
        (_hardlink, re.escape("unsafe (hard link)")),
        (_device, re.escape("unsafe (device file)")),
        (_fifo, re.escape("unsafe (FIFO)")),
        (_clash, re.escape("'facades/val' is both a file and a folder")),
        (
            lambda b: add_file(b, "facades/train/zeros.jpg", bytes(8 << 20)),
            r"into \d+ \(over 100:1, a bomb\)",
        ),
    ],
    ids=["absolute", "dotdot", "symlink", "hardlink", "device", "fifo", "clash", "bomb"],
)
def test_unsafe_archives_are_refused_before_anything_is_written(server, tmp_path, extra, message):  # noqa: F811
    serve("facades", dataset_tar("facades", extra))
    root = tmp_path / "data"
    with pytest.raises(DatasetDownloadError, match=message) as error:
        download_dataset("pix2pix/facades", root, server, progress=False)
    assert len(str(error.value).splitlines()) == 1 and "download was removed" in str(error.value)
    assert leftovers(root / "pix2pix") == []  # nothing extracted, no staging folder, no .part
    assert not Path("/tmp/escaped_abs_p2p.txt").exists() and not (tmp_path / "escaped_p2p.txt").exists()


def test_corrupt_and_truncated_archives_are_refused_and_removed(server, tmp_path):  # noqa: F811
    data = dataset_tar("edges2shoes")
    serve("edges2shoes", data[: len(data) // 2])
    with pytest.raises(DatasetDownloadError, match=r"edges2shoes\.tar\.gz is not a valid tar\.gz archive"):
        download_dataset("pix2pix/edges2shoes", tmp_path, server, progress=False)
    assert leftovers(tmp_path / "pix2pix") == []
    serve("edges2handbags", b"\x1f\x8b not gzip at all" * 10)
    with pytest.raises(DatasetDownloadError, match=r"not a valid tar\.gz archive"):
        download_dataset("pix2pix/edges2handbags", tmp_path, server, progress=False)
    assert leftovers(tmp_path / "pix2pix") == []


def test_an_archive_larger_than_the_free_space_is_refused_and_kept(server, tmp_path, monkeypatch):  # noqa: F811
    """Declared sizes are read from the headers before extraction; the download is kept for later."""
    import shutil
    from collections import namedtuple

    serve("facades", dataset_tar("facades"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 100))
    with pytest.raises(DatasetDownloadError, match=r"unpacks to 0\.0 GiB but only 0\.0 GiB are free"):
        download_dataset("pix2pix/facades", tmp_path, server, progress=False)
    assert leftovers(tmp_path / "pix2pix") == [".facades.tar.gz.part"]
