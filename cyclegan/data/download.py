"""Downloading the reference datasets: resumable, size-checked, safely and atomically extracted.

Two families: the CycleGAN datasets (NAME.zip of trainA/ trainB/ testA/ testB/) and the pix2pix ones,
named ``pix2pix/NAME`` here (NAME.tar.gz of aligned train/ test/ val/ images, under their own base URL).
`download_dataset(name, root)` fetches the archive into ROOT/.NAME.zip.part (or .tar.gz.part), resuming
it with an HTTP Range request when a previous run was cut off, checks its size against what the server
declared, checks every entry (`cyclegan.data.archives`: no escaping paths, links, devices, clashes,
bombs; enough free space) and extracts it into a temporary folder renamed to ROOT/NAME only when
everything succeeded. So ROOT/NAME exists only as a complete dataset. A refused archive's download is
removed, so that the next try (say, from a mirror) starts afresh. The base URL comes from the argument,
else $CYCLEGAN_DATASET_URL (CycleGAN) or $CYCLEGAN_PIX2PIX_DATASET_URL (pix2pix), else the original host
(which goes down at times).
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from cyclegan.data.archives import (
    ARCHIVE_READ_ERRORS,
    BadArchiveError,
    DatasetDownloadError,
    extract_atomically,
)

log = logging.getLogger(__name__)

DATASET_NAMES: tuple[str, ...] = (
    "apple2orange",
    "summer2winter_yosemite",
    "horse2zebra",
    "monet2photo",
    "cezanne2photo",
    "ukiyoe2photo",
    "vangogh2photo",
    "maps",
    "cityscapes",
    "facades",
    "iphone2dslr_flower",
    "ae_photos",
    "mini",
    "mini_pix2pix",
    "mini_colorization",
    "grumpifycat",
)
DEFAULT_BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
BASE_URL_ENV = "CYCLEGAN_DATASET_URL"
# The reference's pix2pix datasets (datasets/download_pix2pix_dataset.sh), aligned A|B images in tar.gz.
PIX2PIX_PREFIX = "pix2pix/"
PIX2PIX_DATASET_NAMES: tuple[str, ...] = tuple(
    PIX2PIX_PREFIX + name for name in ("facades", "maps", "edges2shoes", "edges2handbags", "night2day")
)
PIX2PIX_BASE_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
PIX2PIX_BASE_URL_ENV = "CYCLEGAN_PIX2PIX_DATASET_URL"
# Cityscapes' license forbids redistribution: the reference ships a script to prepare it instead.
CITYSCAPES_STEPS = (
    "pix2pix/cityscapes cannot be downloaded (its license forbids redistribution): get "
    "gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from https://www.cityscapes-dataset.com and "
    "run the reference's datasets/prepare_cityscapes_dataset.py with --output_dir ROOT/pix2pix/cityscapes"
)
_CHUNK = 1 << 20


def archive_kind(name: str) -> str:
    """``tar.gz`` for the pix2pix datasets, ``zip`` for the CycleGAN ones."""
    return "tar.gz" if name.startswith(PIX2PIX_PREFIX) else "zip"


def dataset_url(name: str, base_url: str | None = None) -> str:
    """BASE/NAME.zip (or BASE/NAME.tar.gz for ``pix2pix/NAME``), BASE from the argument, else the family's
    environment variable ($CYCLEGAN_DATASET_URL, $CYCLEGAN_PIX2PIX_DATASET_URL), else the original host."""
    kind = archive_kind(name)
    if kind == "tar.gz":
        base = base_url or os.environ.get(PIX2PIX_BASE_URL_ENV) or PIX2PIX_BASE_URL
        name = name[len(PIX2PIX_PREFIX) :]
    else:
        base = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/{name}.{kind}"


def download_dataset(
    name: str,
    root: str | os.PathLike[str] = "data",
    base_url: str | None = None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
    attempts: int = 3,
) -> Path:
    """Download and extract the reference dataset `name` into ROOT/NAME; returns that folder.

    A folder that is already there is kept as is (it can only exist complete). An interrupted download
    leaves ROOT/.NAME.zip.part (or .tar.gz.part), which the next call resumes.
    """
    if name == f"{PIX2PIX_PREFIX}cityscapes":
        raise DatasetDownloadError(CITYSCAPES_STEPS)
    if name not in DATASET_NAMES + PIX2PIX_DATASET_NAMES:
        known = ", ".join(DATASET_NAMES + PIX2PIX_DATASET_NAMES)
        raise DatasetDownloadError(f"unknown dataset {name!r}; choose one of: {known}")
    target = Path(root) / name
    if target.is_dir():
        log.info("%s is already there; delete it to download again", target)
        return target
    if target.exists():
        raise DatasetDownloadError(f"{target} exists and is not a folder; move it away first")
    target.parent.mkdir(parents=True, exist_ok=True)
    url = dataset_url(name, base_url)
    kind = archive_kind(name)
    partial = target.parent / f".{target.name}.{kind}.part"
    fetch_resumable(url, partial, progress=progress, timeout=timeout, attempts=attempts)
    try:
        extract_atomically(partial, target, kind)
    except ARCHIVE_READ_ERRORS as error:
        partial.unlink(missing_ok=True)  # corrupt as served: the next call must start over
        raise DatasetDownloadError(
            f"{url} is not a valid {kind} archive ({error}); nothing was extracted"
        ) from error
    except BadArchiveError as error:
        partial.unlink(missing_ok=True)  # refused as served: the next call must start over
        raise BadArchiveError(f"{error}; nothing was extracted and the download was removed") from error
    partial.unlink()
    return target


def fetch_resumable(url: str, destination: Path, *, progress: bool, timeout: float, attempts: int) -> None:
    """Fetch url into destination, resuming an existing partial file; verifies the declared size."""
    for attempt in range(1, attempts + 1):
        try:
            if _fetch_once(url, destination, progress=progress, timeout=timeout):
                return
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as error:
            if isinstance(error, urllib.error.HTTPError):
                raise DatasetDownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
            if isinstance(error, urllib.error.URLError):  # no connection at all: retrying cannot help
                raise DatasetDownloadError(
                    f"cannot reach {urllib.parse.urlsplit(url).netloc} to download {url} ({error.reason}); "
                    f"check the network connection, or download from a mirror with --base-url URL "
                    f"(or ${BASE_URL_ENV}, ${PIX2PIX_BASE_URL_ENV} for pix2pix datasets)"
                ) from error
            log.warning("download of %s interrupted (attempt %d/%d): %s", url, attempt, attempts, error)
    have = destination.stat().st_size if destination.exists() else 0
    kept = (
        f"{destination} holds {have} bytes and the next run resumes from there" if have else "no data arrived"
    )
    raise DatasetDownloadError(f"download of {url} did not complete after {attempts} attempt(s); {kept}")


def _fetch_once(url: str, destination: Path, *, progress: bool, timeout: float) -> bool:
    """One request; True when destination now holds the whole file, False when it should be retried."""
    offset = destination.stat().st_size if destination.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # our partial file is not a prefix the server can continue
            log.warning("server refused to resume %s at byte %d; starting over", url, offset)
            destination.unlink()
            return False
        raise
    with response:
        total = _expected_total(response, offset)
        if response.status == 200 and offset:
            log.warning("server does not resume %s; downloading it again from the start", url)
            offset = 0
        with (
            open(destination, "ab" if offset else "wb") as sink,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=Path(url).name,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                sink.write(chunk)
                bar.update(len(chunk))
    size = destination.stat().st_size
    if total is not None and size != total:
        if size > total:
            destination.unlink()
            raise DatasetDownloadError(f"{url}: got {size} bytes but the server declared {total}; removed")
        return False
    return True


def _expected_total(response: http.client.HTTPResponse, offset: int) -> int | None:
    """The full file size the server declares (Content-Range for a partial answer, else Content-Length)."""
    if response.status == 206:
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            raise DatasetDownloadError(
                f"{response.url}: unexpected Content-Range {response.headers.get('Content-Range')!r} "
                f"for a request from byte {offset}"
            )
        return None if match.group(2) == "*" else int(match.group(2))
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None
