"""cyclegan.data: unpaired (CycleGAN) and paired (pix2pix) image data as LightningDataModules, decoding and
dataset downloads.

Stands alone: imports nothing from cyclegan.ops, cyclegan.nn, cyclegan.model or cyclegan.cli.
"""

import importlib
from typing import Any

# Loaded on first use, so that `cyclegan.data.decode` and `cyclegan.data.files` (used by inference) do
# not pull in Lightning through the datamodule.
_EXPORTS = {
    "UnpairedImageDataModule": "datamodule",
    "PairedImageDataModule": "paired",
    "PAIRED_FORMATS": "paired",
    "BadImageError": "decode",
    "DATASET_NAMES": "download",
    "PIX2PIX_DATASET_NAMES": "download",
    "DatasetDownloadError": "download",
    "download_dataset": "download",
    "IMAGE_EXTENSIONS": "files",
    "PREPROCESS_MODES": "transforms",
    "TEST_PREPROCESS_MODES": "transforms",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cyclegan.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cyclegan.data' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
