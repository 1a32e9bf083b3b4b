"""cyclegan.data: unpaired two-domain image data (LightningDataModule) and reference dataset downloads.

Stands alone: imports nothing from cyclegan.ops, cyclegan.nn, cyclegan.model or cyclegan.cli.
"""

from cyclegan.data.datamodule import UnpairedImageDataModule
from cyclegan.data.decode import BadImageError
from cyclegan.data.download import DATASET_NAMES, DatasetDownloadError, download_dataset
from cyclegan.data.files import IMAGE_EXTENSIONS
from cyclegan.data.transforms import PREPROCESS_MODES, TEST_PREPROCESS_MODES

__all__ = [
    "DATASET_NAMES",
    "IMAGE_EXTENSIONS",
    "PREPROCESS_MODES",
    "TEST_PREPROCESS_MODES",
    "BadImageError",
    "DatasetDownloadError",
    "UnpairedImageDataModule",
    "download_dataset",
]
