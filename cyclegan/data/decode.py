"""Decoding one image file into tensors: the one decoder of training and of inference.

torchvision.io decodes JPEG, PNG and WebP (the fast path, EXIF orientation honoured); PIL decodes the
formats torchvision lacks (BMP, TIFF, PPM/PGM). The header is read first so that a decompression bomb
is refused before any pixel is decoded, and a PNG's image data is checked before libpng sees it (a
damaged PNG crashes torchvision's decoder). Training takes 8-bit colour (`decode_image_bytes`);
inference also keeps alpha and 16-bit precision (`decode_pixels`).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import rgb_to_grayscale

from cyclegan.data.png_check import png_damage

# PIL's own limit for a single image (about 0.25 GiB of RGB pixels).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

_TORCHVISION_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class BadImageError(ValueError):
    """A file that cannot be used as an image: empty, truncated, damaged, not an image, or too large."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"bad image {path!r}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    """``color``: (channels, H, W), uint8 or uint16 (16-bit sources); ``alpha``: (H, W) uint8 or None."""

    color: torch.Tensor
    alpha: torch.Tensor | None


def decode_image_bytes(
    data: bytes, path: str, channels: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> torch.Tensor:
    """Decode encoded image bytes into a (channels, H, W) uint8 tensor; channels is 1 (gray) or 3 (RGB).

    Grayscale, palette, RGBA, 16-bit and CMYK inputs all come out with `channels` channels (alpha is
    dropped, as PIL's convert does). Raises BadImageError naming `path` for anything unusable.
    """
    return to_uint8(decode_pixels(data, path, channels, max_pixels).color)


def decode_pixels(
    data: bytes,
    path: str,
    channels: int,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    *,
    with_alpha: bool = False,
) -> DecodedImage:
    """Decode into `channels` colour channels at the source's depth (8 or 16 bit), upright (EXIF), with
    the alpha channel when ``with_alpha`` and the file has one. Raises BadImageError naming `path`."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not data:
        raise BadImageError(path, "the file is empty (0 bytes)")
    image_format, width, height, has_alpha = _read_header(data, path, max_pixels)
    if width * height > max_pixels:
        raise BadImageError(
            path,
            f"declared size {width}x{height} is over the limit of {max_pixels} pixels (max_image_pixels)",
        )
    try:
        if image_format in _TORCHVISION_FORMATS:
            damage = png_damage(data) if image_format == "PNG" else None
            if damage is not None:
                raise ValueError(f"damaged PNG: {damage}")
            return _decode_with_torchvision(data, channels, with_alpha and has_alpha)
        with _open_with_pil(data, max_pixels) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
        return pil_pixels(image, channels, with_alpha=with_alpha)
    except Exception as error:  # any decoder failure on untrusted bytes means this file is unusable
        raise BadImageError(path, f"cannot decode {image_format} data ({error})") from error


def pil_pixels(image: Image.Image, channels: int, *, with_alpha: bool = False) -> DecodedImage:
    """A PIL image of any mode as `channels` colour channels (16-bit and float grayscale as uint16) and,
    when ``with_alpha``, its alpha channel (None when it has none)."""
    alpha = None
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if with_alpha and image.mode in _ALPHA_MODES:
        alpha = torch.from_numpy(np.array(image.convert("RGBA").getchannel("A")))
    if image.mode in _HIGH_DEPTH_MODES:
        gray = _as_tensor(_high_bit_depth_to_16bit(image))
        return DecodedImage(gray.expand(channels, -1, -1).contiguous(), alpha)
    return DecodedImage(_as_tensor(np.asarray(image.convert("RGB" if channels == 3 else "L"))), alpha)


def to_uint8(color: torch.Tensor) -> torch.Tensor:
    """uint8 as is; uint16 scaled from 0..65535 onto 0..255 with rounding."""
    if color.dtype == torch.uint16:
        return torch.div(color.to(torch.int32) * 255 + 32767, 65535, rounding_mode="floor").to(torch.uint8)
    return color


def _read_header(data: bytes, path: str, max_pixels: int) -> tuple[str, int, int, bool]:
    """Format, declared size and whether there is alpha, from the header alone (PIL parses headers
    lazily, without decoding)."""
    try:
        with _open_with_pil(data, max_pixels) as image:
            has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
            return str(image.format), image.width, image.height, has_alpha
    except Image.DecompressionBombError as error:
        raise BadImageError(path, f"decompression bomb refused ({error})") from error
    except Exception as error:  # PIL raises many types on malformed headers
        raise BadImageError(path, f"not a readable image ({error})") from error


@contextmanager
def _open_with_pil(data: bytes, max_pixels: int) -> Iterator[Image.Image]:
    """PIL's lazily decoded image, its bomb check held to ``max_pixels`` (ours is made after the header).

    PIL refuses images over twice its global limit; that limit is raised while opening only when
    ``max_pixels`` asks for more, and restored at once.
    """
    default = Image.MAX_IMAGE_PIXELS
    lift = default is not None and max_pixels > 2 * default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if lift:
            Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            image = Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = default
    with image:
        yield image


def _decode_with_torchvision(data: bytes, channels: int, with_alpha: bool) -> DecodedImage:
    if with_alpha:
        mode = ImageReadMode.RGB_ALPHA if channels == 3 else ImageReadMode.GRAY_ALPHA
    else:
        mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    image = decode_image(encoded, mode=mode, apply_exif_orientation=True)
    alpha = None
    if image.shape[0] in (2, 4):
        alpha, image = to_uint8(image[-1]), image[:-1]
    if image.shape[0] != channels:  # some decoders (WebP) ignore a GRAY request
        image = rgb_to_grayscale(image) if channels == 1 else image.expand(3, -1, -1).contiguous()
    return DecodedImage(image, alpha)


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) array -> contiguous (C, H, W) tensor."""
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _high_bit_depth_to_16bit(image: Image.Image) -> np.ndarray:
    """A 16-bit (or 32-bit integer/float) single-channel image on 0..65535; values up to 255 are 8-bit
    content and scaled up (PIL's convert would clip instead)."""
    array = np.asarray(image).astype(np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
    return np.clip(np.rint(array * (65535.0 / top)), 0, 65535).astype(np.uint16)
