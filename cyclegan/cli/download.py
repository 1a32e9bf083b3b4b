"""`cyclegan-download NAME [--root DIR] [--base-url URL]`: fetch a reference CycleGAN or pix2pix dataset."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cyclegan.data.download import (
    BASE_URL_ENV,
    DATASET_NAMES,
    DEFAULT_BASE_URL,
    PIX2PIX_BASE_URL,
    PIX2PIX_BASE_URL_ENV,
    PIX2PIX_DATASET_NAMES,
    DatasetDownloadError,
    download_dataset,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cyclegan-download",
        description=(
            "Download a reference CycleGAN dataset into ROOT/NAME (trainA/ trainB/ testA/ testB/), or a "
            "pix2pix one into ROOT/pix2pix/NAME (aligned train/ test/ val/). Interrupted downloads resume; "
            "the folder appears only once complete."
        ),
    )
    parser.add_argument(
        "name",
        metavar="NAME",
        choices=(*DATASET_NAMES, *PIX2PIX_DATASET_NAMES, "pix2pix/cityscapes"),
        help=f"CycleGAN: {', '.join(DATASET_NAMES)}; pix2pix: {', '.join(PIX2PIX_DATASET_NAMES)}",
    )
    parser.add_argument(
        "--root",
        default=os.environ.get("CYCLEGAN_DATA_DIR", "data"),
        help="folder that receives NAME/ (default: $CYCLEGAN_DATA_DIR or ./data)",
    )
    parser.add_argument(
        "--base-url",
        default=None,
        help=(
            f"where NAME.zip lives (default: ${BASE_URL_ENV} or {DEFAULT_BASE_URL}), or for pix2pix "
            f"datasets NAME.tar.gz (default: ${PIX2PIX_BASE_URL_ENV} or {PIX2PIX_BASE_URL})"
        ),
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry")
    parser.add_argument("--attempts", type=int, default=3, help="tries, each resuming the previous one")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        path = download_dataset(
            args.name,
            args.root,
            args.base_url,
            progress=not args.no_progress,
            timeout=args.timeout,
            attempts=args.attempts,
        )
    except DatasetDownloadError as error:
        print(f"cyclegan-download: error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
