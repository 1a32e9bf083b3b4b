"""The reference's preprocessing modes on uint8 tensors (torchvision.transforms.v2), randomness from a
caller-supplied torch.Generator so every crop and flip is a pure function of the sample's seed.

Resizing is bicubic with antialiasing on uint8, which follows PIL's bicubic filter (the reference's).
Images are resized first and cropped second, as in the reference; an image that would end up smaller
than the crop is first scaled up (aspect kept) so the crop always fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def _same_size(image: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``image`` resized to the height and width of ``like`` (the other image of a pair)."""
    return _resize(image, like.shape[-2], like.shape[-1])


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


@dataclass(frozen=True)
class CropFlip:
    """One draw of the training randomness: the crop's top-left corner (0, 0 when not cropping) and
    whether to mirror. Drawn once per sample, so the two halves of a pair can share it."""

    top: int
    left: int
    flip: bool


class TrainTransform:
    """Training preprocessing: the reference's `preprocess` mode, random crop, random horizontal flip.

    Three steps, so paired images can share one draw: `resize` (deterministic), `draw` (the random crop
    corner and flip, from a generator) and `apply`; calling the transform does all three.
    """

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
        resized = self.resize(image)
        return self.apply(resized, self.draw(resized.shape[-2], resized.shape[-1], generator))

    def resize(self, image: torch.Tensor) -> torch.Tensor:
        """The `preprocess` mode's resizing (uint8 in, uint8 out); a cropping mode also scales an image
        smaller than the crop up so the crop fits."""
        if self.preprocess == "resize_and_crop":
            image = _resize(image, self.load_size, self.load_size)
        elif self.preprocess in ("scale_width", "scale_width_and_crop"):
            image = _scale_width(image, self.load_size, self.crop_size)
        elif self.preprocess == "none":
            image = _round_to_base(image)
        return _at_least(image, self.crop_size) if self.crops else image

    def draw(self, height: int, width: int, generator: torch.Generator) -> CropFlip:
        """The random crop corner (for a resized image of ``height`` x ``width``) and flip."""
        top = left = 0
        if self.crops:
            top = int(torch.randint(0, height - self.crop_size + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - self.crop_size + 1, (1,), generator=generator))
        return CropFlip(top, left, self.flip and float(torch.rand((), generator=generator)) < 0.5)

    def pair(
        self, image_a: torch.Tensor, image_b: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both images of a pair with one draw: the same crop and flip (B first resized to A's size when
        the two differ, so the crop covers the same content)."""
        resized_a = self.resize(image_a)
        resized_b = _same_size(self.resize(image_b), resized_a)
        draw = self.draw(resized_a.shape[-2], resized_a.shape[-1], generator)
        return self.apply(resized_a, draw), self.apply(resized_b, draw)

    def apply(self, resized: torch.Tensor, draw: CropFlip) -> torch.Tensor:
        """Crop and flip a `resize`d uint8 image as ``draw`` says -> float32 in [-1, 1]."""
        if self.crops:
            resized = F.crop(resized, draw.top, draw.left, self.crop_size, self.crop_size)
        if draw.flip:
            resized = F.horizontal_flip(resized)
        return to_unit_range(resized)


class EvalTransform:
    """Validation/test preprocessing, no randomness: `resize` to size x size, or `none` (multiple of 4)."""

    def __init__(self, preprocess: str, size: int) -> None:
        check_choice("test_preprocess", preprocess, TEST_PREPROCESS_MODES, what="test preprocessing mode")
        self.preprocess = preprocess
        self.size = int(size)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = _resize(image, self.size, self.size) if self.preprocess == "resize" else _round_to_base(image)
        return to_unit_range(image)

    def pair(self, image_a: torch.Tensor, image_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both images of a pair, B resized to A's size when the two differ."""
        resized_a = self(image_a)
        return resized_a, _same_size(self(image_b), resized_a)
