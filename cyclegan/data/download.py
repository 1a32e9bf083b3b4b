"""Downloading the reference CycleGAN datasets: resumable, size-checked, safely and atomically extracted.

`download_dataset(name, root)` fetches BASE_URL/NAME.zip into ROOT/.NAME.zip.part (resuming it with an
HTTP Range request when a previous run was cut off), checks its size against what the server declared,
refuses archives with entries that would land outside the target folder, that clash (a file and a
folder of one name), that compress suspiciously well (zip bombs) or that would not fit on the disk,
extracts into a temporary folder under ROOT and renames that to ROOT/NAME only when everything
succeeded. So ROOT/NAME exists only as a complete dataset. A refused archive's download is removed, so
that the next try (say, from a mirror) starts afresh. The base URL comes from the argument, else
$CYCLEGAN_DATASET_URL, else the original host (which goes down at times).
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

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
_CHUNK = 1 << 20
# The reference datasets are JPEGs, which deflate barely at all; a member over _RATIO_CHECKED_FROM bytes
# that claims to shrink more than this is a zip bomb.
MAX_COMPRESSION_RATIO = 100
_RATIO_CHECKED_FROM = 1 << 20


class DatasetDownloadError(RuntimeError):
    """A dataset could not be downloaded or extracted; the message says what and where."""


class BadArchiveError(DatasetDownloadError):
    """The archive itself is refused (unsafe, clashing or bomb-like entries); its download is dropped."""


def dataset_url(name: str, base_url: str | None = None) -> str:
    """BASE/NAME.zip, BASE from the argument, else $CYCLEGAN_DATASET_URL, else the original host."""
    base = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/{name}.zip"


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
    leaves ROOT/.NAME.zip.part, which the next call resumes.
    """
    if name not in DATASET_NAMES:
        raise DatasetDownloadError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
    root_dir = Path(root)
    target = root_dir / name
    if target.is_dir():
        log.info("%s is already there; delete it to download again", target)
        return target
    if target.exists():
        raise DatasetDownloadError(f"{target} exists and is not a folder; move it away first")
    root_dir.mkdir(parents=True, exist_ok=True)
    url = dataset_url(name, base_url)
    partial = root_dir / f".{name}.zip.part"
    fetch_resumable(url, partial, progress=progress, timeout=timeout, attempts=attempts)
    try:
        extract_atomically(partial, target)
    except (zipfile.BadZipFile, EOFError) as error:
        partial.unlink(missing_ok=True)  # corrupt as served: the next call must start over
        raise DatasetDownloadError(
            f"{url} is not a valid zip archive ({error}); nothing was extracted"
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
                    f"(or ${BASE_URL_ENV})"
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


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry must not be extracted (absolute, escaping the folder, or a link), else None."""
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in parts:
        return "path escapes the target folder"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def clashing_member(members: list[zipfile.ZipInfo]) -> str | None:
    """A name the archive uses both for a file and for a folder (it cannot be extracted), else None."""
    files, folders = set(), set()
    for info in members:
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        folders.update("/".join(parts[:end]) for end in range(1, len(parts)))
        (folders if info.is_dir() else files).add("/".join(parts))
    return min(files & folders, default=None)


def bomb_member(members: list[zipfile.ZipInfo]) -> zipfile.ZipInfo | None:
    """The first member that claims to inflate more than MAX_COMPRESSION_RATIO times, else None."""
    return next(
        (
            info
            for info in members
            if info.file_size > _RATIO_CHECKED_FROM
            and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
        ),
        None,
    )


def check_members(archive: Path, members: list[zipfile.ZipInfo], folder: Path) -> None:
    """Refuse, before anything is written, an archive that is empty, unsafe, clashing or a zip bomb
    (BadArchiveError), or that would not fit in the free space of ``folder`` (DatasetDownloadError)."""
    if not members:
        raise BadArchiveError(f"{archive} is an empty archive")
    for info in members:
        reason = unsafe_member(info)
        if reason is not None:
            raise BadArchiveError(f"refusing {archive}: entry {info.filename!r} is unsafe ({reason})")
    clash = clashing_member(members)
    if clash is not None:
        raise BadArchiveError(f"refusing {archive}: {clash!r} is both a file and a folder in it")
    bomb = bomb_member(members)
    if bomb is not None:
        raise BadArchiveError(
            f"refusing {archive}: entry {bomb.filename!r} would inflate {bomb.compress_size} bytes into "
            f"{bomb.file_size} (over {MAX_COMPRESSION_RATIO}:1, a zip bomb)"
        )
    needed = sum(info.file_size for info in members)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DatasetDownloadError(
            f"{archive} unpacks to {needed / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB are free in "
            f"{folder}; free some space and run again (the download is kept)"
        )


def extract_atomically(archive: Path, target: Path) -> None:
    """Extract archive so that `target` appears complete or not at all.

    Every entry is checked first (`check_members`: zip-slip, clashes, bombs, free space). zipfile writes
    no member past the size the archive declares for it and checks its CRC, so a member whose data
    inflates beyond its declared size fails (BadZipFile) instead of filling the disk. Extraction goes to
    a temporary folder beside `target`, renamed into place at the end, and removed on any failure. A
    single top-level folder in the archive (the reference zips hold NAME/trainA/...) becomes `target`.
    """
    with zipfile.ZipFile(archive) as bundle:
        members = bundle.infolist()
        check_members(archive, members, target.parent)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.extracting-", dir=target.parent))
        try:
            bundle.extractall(staging)
            entries = list(staging.iterdir())
            content = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
            os.rename(content, target)
        except OSError as error:
            raise DatasetDownloadError(f"cannot extract {archive} into {target.parent}: {error}") from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
