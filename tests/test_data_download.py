"""Dataset downloads against a real HTTP server on 127.0.0.1 serving zips made here."""

from __future__ import annotations

import io
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from cyclegan.cli.download import main as download_cli
from cyclegan.data import DATASET_NAMES, DatasetDownloadError, UnpairedImageDataModule, download_dataset
from cyclegan.data.download import BASE_URL_ENV, dataset_url


class ZipServer(BaseHTTPRequestHandler):
    """Serves `files` by name with HTTP Range support; `cut` drops a connection after N bytes (once each)."""

    files: ClassVar[dict[str, bytes]] = {}
    declared: ClassVar[dict[str, int]] = {}  # Content-Length to claim instead of the true size (lying)
    cut: ClassVar[dict[str, list[int]]] = {}
    ranges: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        self.ranges.append(self.headers.get("Range"))
        if name not in self.files:
            self.send_error(404, "no such dataset")
            return
        data = self.files[name]
        start = 0
        requested = self.headers.get("Range")
        if requested:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            if start >= len(data):
                self.send_error(416, "range not satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(self.declared.get(name, len(body) + start) - start))
        self.end_headers()
        cuts = self.cut.get(name)
        if cuts:
            self.wfile.write(body[: cuts.pop(0)])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    ZipServer.files, ZipServer.declared, ZipServer.cut, ZipServer.ranges = {}, {}, {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ZipServer)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/datasets"
    finally:
        httpd.shutdown()
        httpd.server_close()


def dataset_zip(name: str, images: int = 3) -> bytes:
    """A zip laid out like the reference ones: NAME/trainA, trainB, testA, testB holding JPEGs."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buffer, "w") as bundle:
        for split in ("trainA", "trainB", "testA", "testB"):
            for i in range(images):
                picture = io.BytesIO()
                Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(picture, "JPEG")
                bundle.writestr(f"{name}/{split}/{i}.jpg", picture.getvalue())
    return buffer.getvalue()


def serve(name: str, data: bytes) -> None:
    ZipServer.files[f"datasets/{name}.zip"] = data


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_good_zip_lands_complete_and_loads(server, tmp_path):
    serve("mini", dataset_zip("mini"))
    target = download_dataset("mini", tmp_path, server, progress=False)
    assert target == tmp_path / "mini"
    assert leftovers(tmp_path) == ["mini"]  # no partial file, no staging folder
    assert sorted(p.name for p in target.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    dm = UnpairedImageDataModule(str(target), load_size=24, crop_size=16, num_workers=0)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["A"].shape == (1, 3, 16, 16)
    # a second call finds the complete folder and does not download again
    requests = len(ZipServer.ranges)
    assert download_dataset("mini", tmp_path, server, progress=False) == target
    assert len(ZipServer.ranges) == requests


def test_resumes_a_partial_download_with_a_range_request(server, tmp_path):
    data = dataset_zip("facades")
    serve("facades", data)
    (tmp_path / ".facades.zip.part").write_bytes(data[:1000])  # left by an earlier, interrupted run
    download_dataset("facades", tmp_path, server, progress=False, attempts=1)
    assert ZipServer.ranges == ["bytes=1000-"]
    assert leftovers(tmp_path) == ["facades"]
    assert len(list((tmp_path / "facades" / "trainA").iterdir())) == 3


def test_connection_drop_is_retried_from_where_it_stopped(server, tmp_path):
    data = dataset_zip("maps")
    serve("maps", data)
    ZipServer.cut["datasets/maps.zip"] = [700, 900]
    download_dataset("maps", tmp_path, server, progress=False, attempts=3)
    assert ZipServer.ranges == [None, "bytes=700-", "bytes=1600-"]
    assert (tmp_path / "maps" / "testB").is_dir()


def test_interrupted_download_never_looks_complete_and_the_next_run_resumes(server, tmp_path):
    data = dataset_zip("cityscapes")
    serve("cityscapes", data)
    ZipServer.cut["datasets/cityscapes.zip"] = [1234]
    with pytest.raises(DatasetDownloadError, match="resumes"):
        download_dataset("cityscapes", tmp_path, server, progress=False, attempts=1)
    assert not (tmp_path / "cityscapes").exists()
    assert (tmp_path / ".cityscapes.zip.part").stat().st_size == 1234
    download_dataset("cityscapes", tmp_path, server, progress=False, attempts=1)
    assert ZipServer.ranges[-1] == "bytes=1234-"
    assert leftovers(tmp_path) == ["cityscapes"]


def test_size_mismatch_is_an_error(server, tmp_path):
    data = dataset_zip("mini")
    serve("mini", data)
    ZipServer.declared["datasets/mini.zip"] = len(data) + 5000  # server promises more than it sends
    ZipServer.cut["datasets/mini.zip"] = [len(data), 0]
    with pytest.raises(DatasetDownloadError, match="did not complete"):
        download_dataset("mini", tmp_path, server, progress=False, attempts=2)
    assert not (tmp_path / "mini").exists()


def test_truncated_zip_is_rejected_and_nothing_lands(server, tmp_path):
    data = dataset_zip("mini")
    serve("mini", data[: len(data) * 2 // 3])  # served whole, but the archive itself is cut short
    with pytest.raises(DatasetDownloadError, match="not a valid zip"):
        download_dataset("mini", tmp_path, server, progress=False)
    assert leftovers(tmp_path) == []  # no dataset, no staging folder, no partial to resume from


@pytest.mark.parametrize("entry", ["../escaped.txt", "mini/../../escaped.txt", "/tmp/escaped_abs.txt"])
def test_zip_slip_is_refused_before_anything_is_written(server, tmp_path, entry):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("mini/trainA/ok.jpg", b"fine")
        bundle.writestr(entry, b"evil")
    serve("mini", buffer.getvalue())
    root = tmp_path / "root"
    with pytest.raises(DatasetDownloadError, match="unsafe"):
        download_dataset("mini", root, server, progress=False)
    assert not (root / "mini").exists()
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/escaped_abs.txt").exists()
    assert [p for p in root.iterdir() if p.is_dir()] == []  # no staging folder left


def test_symlink_entries_are_refused(server, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        link = zipfile.ZipInfo("mini/trainA/link.jpg")
        link.external_attr = 0o120777 << 16  # a symbolic link to /etc/passwd
        bundle.writestr(link, "/etc/passwd")
    serve("mini", buffer.getvalue())
    with pytest.raises(DatasetDownloadError, match="symbolic link"):
        download_dataset("mini", tmp_path, server, progress=False)


def test_missing_dataset_on_the_server_and_unknown_names(server, tmp_path):
    with pytest.raises(DatasetDownloadError, match="HTTP 404"):
        download_dataset("horse2zebra", tmp_path, server, progress=False)
    with pytest.raises(DatasetDownloadError, match="unknown dataset 'horse2cat'"):
        download_dataset("horse2cat", tmp_path, server)
    assert not (tmp_path / "horse2zebra").exists()


def test_base_url_from_the_environment_and_the_cli(server, tmp_path, monkeypatch, capsys):
    assert len(DATASET_NAMES) == 16 and "horse2zebra" in DATASET_NAMES
    monkeypatch.setenv(BASE_URL_ENV, server)
    assert dataset_url("mini") == f"{server}/mini.zip"
    assert dataset_url("mini", "http://elsewhere/x/") == "http://elsewhere/x/mini.zip"
    serve("mini", dataset_zip("mini"))
    assert download_cli(["mini", "--root", str(tmp_path), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "mini")
    assert download_cli(["ae_photos", "--root", str(tmp_path), "--no-progress"]) == 1
    assert "HTTP 404" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        download_cli(["not_a_dataset"])


def test_unreachable_host_fails_at_once_with_what_to_do(tmp_path):
    """No connection (here: a closed port) is not retried and names the host and the mirror options."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(DatasetDownloadError) as error:
        download_dataset("mini", tmp_path, f"http://127.0.0.1:{port}/", progress=False, timeout=5)
    message = str(error.value)
    assert f"cannot reach 127.0.0.1:{port}" in message and "--base-url" in message
    assert BASE_URL_ENV in message and leftovers(tmp_path) == []


def test_a_silent_server_times_out_and_says_nothing_arrived(tmp_path):
    """A server that accepts but never answers: each attempt ends after `timeout` seconds."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(DatasetDownloadError, match=r"after 2 attempt.*no data arrived"):
            download_dataset("mini", tmp_path, url, progress=False, timeout=0.2, attempts=2)
    finally:
        listener.close()
    assert leftovers(tmp_path) == []
