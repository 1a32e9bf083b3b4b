"""Hostile archives from a dataset server: zip bombs, sizes that lie, archives too big for the disk and
a file and a folder of one name. Real zips built here, served over HTTP from 127.0.0.1."""

from __future__ import annotations

import functools
import io
import shutil
import struct
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from cyclegan.cli.download import main as download_cli
from cyclegan.data import DatasetDownloadError, download_dataset


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class Server(NamedTuple):
    folder: Path  # what is served
    url: str  # where


@pytest.fixture
def served(tmp_path) -> Iterator[Server]:
    """A folder whose files are served at http://127.0.0.1:PORT/."""
    folder = tmp_path / "server"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(folder, f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    pixels = (np.random.default_rng(seed).random((24, 24, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def good_zip(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for split in ("trainA", "trainB"):
            for index in range(2):
                bundle.writestr(f"{name}/{split}/{index}.jpg", jpeg(index))
    return buffer.getvalue()


def zip_bomb(name: str, inflated: int) -> bytes:
    """A real zip bomb: ``inflated`` bytes of zeros deflated into a member about 1000 times smaller."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(f"{name}/trainA/0.jpg", jpeg(0))
        with bundle.open(f"{name}/trainA/zeros.jpg", "w") as member:
            block = bytes(1 << 20)
            for _ in range(inflated >> 20):
                member.write(block)
    return buffer.getvalue()


def with_declared_sizes(data: bytes, file_size: int, compress_size: int | None = None) -> bytes:
    """The archive with every central-directory record declaring other sizes (what a lying zip does)."""
    patched = bytearray(data)
    (directory_offset,) = struct.unpack_from("<I", patched, patched.rindex(b"PK\x05\x06") + 16)
    position = directory_offset
    while patched[position : position + 4] == b"PK\x01\x02":
        if compress_size is not None:
            struct.pack_into("<I", patched, position + 20, compress_size)
        struct.pack_into("<I", patched, position + 24, file_size)
        name, extra, comment = struct.unpack_from("<HHH", patched, position + 28)
        position += 46 + name + extra + comment
    return bytes(patched)


def leftovers(root: Path) -> list[str]:
    return sorted(path.name for path in root.iterdir()) if root.exists() else []


def test_a_zip_bomb_is_refused_before_extraction_and_its_download_removed(served, tmp_path):
    bomb = zip_bomb("mini", 64 << 20)  # 64 MiB of zeros in a zip of about 70 kB
    assert len(bomb) < 200_000
    (served.folder / "mini.zip").write_bytes(bomb)
    root = tmp_path / "data"
    with pytest.raises(DatasetDownloadError, match=r"zeros\.jpg' would inflate .* a zip bomb"):
        download_dataset("mini", root, served.url, progress=False)
    assert leftovers(root) == []  # nothing extracted, no staging folder, no .part to resume


def test_a_member_that_inflates_past_its_declared_size_stops_and_nothing_lands(served, tmp_path):
    """The central directory says 1000 bytes; the data inflates to 2 MiB (the ratio check cannot see it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("mini/trainA/big.jpg", np.random.default_rng(0).bytes(2 << 20))
    (served.folder / "mini.zip").write_bytes(with_declared_sizes(buffer.getvalue(), file_size=1000))
    root = tmp_path / "data"
    with pytest.raises(DatasetDownloadError, match=r"not a valid zip archive .*Bad CRC-32"):
        download_dataset("mini", root, served.url, progress=False)
    assert leftovers(root) == []


def test_an_archive_larger_than_the_free_space_is_refused_and_its_download_kept(served, tmp_path):
    """3000 members each declaring 4 GiB (and as much compressed data, so no bomb ratio): 12 TiB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for index in range(3000):
            bundle.writestr(f"mini/trainA/{index}.jpg", b"x")
    lying = with_declared_sizes(buffer.getvalue(), file_size=0xFFFFFFF0, compress_size=0xFFFFFFF0)
    assert shutil.disk_usage(tmp_path).free < 3000 * 0xFFFFFFF0
    (served.folder / "mini.zip").write_bytes(lying)
    root = tmp_path / "data"
    with pytest.raises(DatasetDownloadError, match=r"unpacks to 12000\.0 GiB but only .* GiB are free"):
        download_dataset("mini", root, served.url, progress=False)
    assert leftovers(root) == [".mini.zip.part"]  # a sound archive: kept for when there is room


def test_a_file_and_a_folder_of_one_name_is_one_line_and_the_next_mirror_works_at_once(
    served, tmp_path, capsys
):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("mini/trainA/x", b"a file")
        bundle.writestr("mini/trainA/x/0.jpg", jpeg(0))  # x is also a folder
    (served.folder / "broken").mkdir()
    (served.folder / "broken" / "mini.zip").write_bytes(buffer.getvalue())
    root = tmp_path / "data"
    assert (
        download_cli(["mini", "--root", str(root), "--base-url", f"{served.url}/broken", "--no-progress"])
        == 1
    )
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "'mini/trainA/x' is both a file and a folder" in error and "download was removed" in error
    assert leftovers(root) == []  # the refused archive's .part is gone: a mirror starts afresh
    (served.folder / "mirror").mkdir()
    (served.folder / "mirror" / "mini.zip").write_bytes(good_zip("mini"))
    target = download_dataset("mini", root, f"{served.url}/mirror", progress=False, attempts=1)
    assert sorted(path.name for path in (target / "trainA").iterdir()) == ["0.jpg", "1.jpg"]


def test_an_unsafe_archive_has_its_download_removed_too(served, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("../escaped.jpg", jpeg(0))
    (served.folder / "mini.zip").write_bytes(buffer.getvalue())
    root = tmp_path / "data"
    with pytest.raises(DatasetDownloadError, match="unsafe"):
        download_dataset("mini", root, served.url, progress=False)
    assert leftovers(root) == []
