"""The reference's preprocessing modes on uint8 tensors (torchvision.transforms.v2), randomness from a
caller-supplied torch.Generator so every crop and flip is a pure function of the sample's seed.

Resizing is bicubic with antialiasing on uint8, which follows PIL's bicubic filter (the reference's).
Images are resized first and cropped second, as in the reference; an image that would end up smaller
than the crop is first scaled up (aspect kept) so the crop always fits.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from cyclegan.errors import check_bool, check_choice, check_int

PREPROCESS_MODES: tuple[str, ...] = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
TEST_PREPROCESS_MODES: tuple[str, ...] = ("resize", "none")
_CROPPING_MODES = frozenset({"resize_and_crop", "crop", "scale_width_and_crop"})
# modes that resize to load_size, then crop: a crop_size above load_size cannot be what was meant
RESIZING_CROPS = frozenset({"resize_and_crop", "scale_width_and_crop"})
_SIZE_BASE = 4  # `none` rounds each side to a multiple of this, as the reference does


def _resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if (image.shape[-2], image.shape[-1]) == (height, width):
        return image
    return F.resize(image, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)


def _round_to_base(image: torch.Tensor) -> torch.Tensor:
    height, width = image.shape[-2:]
    return _resize(
        image,
        max(_SIZE_BASE, round(height / _SIZE_BASE) * _SIZE_BASE),
        max(_SIZE_BASE, round(width / _SIZE_BASE) * _SIZE_BASE),
    )


def _scale_width(image: torch.Tensor, target_width: int, min_height: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    if width == target_width and height >= min_height:
        return image
    return _resize(image, int(max(target_width * height / width, min_height)), target_width)


def _at_least(image: torch.Tensor, size: int) -> torch.Tensor:
    """Scale up (aspect kept) so both sides are >= size; images already large enough pass untouched."""
    height, width = image.shape[-2:]
    if min(height, width) >= size:
        return image
    scale = size / min(height, width)
    return _resize(image, max(size, math.ceil(height * scale)), max(size, math.ceil(width * scale)))


def to_unit_range(image: torch.Tensor) -> torch.Tensor:
    """uint8 (C, H, W) -> contiguous float32 in [-1, 1]: x / 127.5 - 1, what the reference's ToTensor then
    Normalize(0.5, 0.5) computes. Done in place on the one float copy: F.normalize on the decoder's
    channels-last strides costs ten times more."""
    scaled = image.to(torch.float32, memory_format=torch.contiguous_format)
    return scaled.mul_(2.0 / 255.0).sub_(1.0)


class TrainTransform:
    """Training preprocessing: the reference's `preprocess` mode, random crop, random horizontal flip."""

    def __init__(self, preprocess: str, load_size: int, crop_size: int, flip: bool) -> None:
        check_choice("preprocess", preprocess, PREPROCESS_MODES, what="preprocessing mode")
        check_int("load_size", load_size, 1)
        check_int("crop_size", crop_size, 1)
        check_bool("flip", flip)
        self.preprocess = preprocess
        self.load_size = int(load_size)
        self.crop_size = int(crop_size)
        self.flip = bool(flip)

    @property
    def crops(self) -> bool:
        return self.preprocess in _CROPPING_MODES

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 (C, H, W) -> float32 (C, h, w) in [-1, 1]; all randomness drawn from `generator`."""
        if self.preprocess == "resize_and_crop":
            image = _resize(image, self.load_size, self.load_size)
        elif self.preprocess in ("scale_width", "scale_width_and_crop"):
            image = _scale_width(image, self.load_size, self.crop_size)
        elif self.preprocess == "none":
            image = _round_to_base(image)
        if self.crops:
            image = _at_least(image, self.crop_size)
            height, width = image.shape[-2:]
            top = int(torch.randint(0, height - self.crop_size + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - self.crop_size + 1, (1,), generator=generator))
            image = F.crop(image, top, left, self.crop_size, self.crop_size)
        if self.flip and float(torch.rand((), generator=generator)) < 0.5:
            image = F.horizontal_flip(image)
        return to_unit_range(image)


class EvalTransform:
    """Validation/test preprocessing, no randomness: `resize` to size x size, or `none` (multiple of 4)."""

    def __init__(self, preprocess: str, size: int) -> None:
        check_choice("test_preprocess", preprocess, TEST_PREPROCESS_MODES, what="test preprocessing mode")
        self.preprocess = preprocess
        self.size = int(size)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = _resize(image, self.size, self.size) if self.preprocess == "resize" else _round_to_base(image)
        return to_unit_range(image)
