"""Decoding one image file into a uint8 tensor with the requested number of channels.

torchvision.io decodes JPEG, PNG and WebP (the fast path, EXIF orientation honoured); PIL decodes the
formats torchvision lacks (BMP, TIFF, PPM/PGM). The header is read first so that a decompression bomb
is refused before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import rgb_to_grayscale

# PIL's own limit for a single image (about 0.25 GiB of RGB pixels).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

_TORCHVISION_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})


class BadImageError(ValueError):
    """A file that cannot be used as an image: empty, truncated, not an image, or too large."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"bad image {path!r}: {reason}")
        self.path = path
        self.reason = reason


def decode_image_bytes(
    data: bytes, path: str, channels: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> torch.Tensor:
    """Decode encoded image bytes into a (channels, H, W) uint8 tensor; channels is 1 (gray) or 3 (RGB).

    Grayscale, palette, RGBA, 16-bit and CMYK inputs all come out with `channels` channels (alpha is
    dropped, as PIL's convert does). Raises BadImageError naming `path` for anything unusable.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not data:
        raise BadImageError(path, "the file is empty (0 bytes)")
    image_format, width, height = _read_header(data, path)
    if width * height > max_pixels:
        raise BadImageError(
            path,
            f"declared size {width}x{height} is over the limit of {max_pixels} pixels (max_image_pixels)",
        )
    try:
        if image_format in _TORCHVISION_FORMATS:
            return _decode_with_torchvision(data, channels)
        return _decode_with_pil(data, channels)
    except Exception as error:  # any decoder failure on untrusted bytes means this file is unusable
        raise BadImageError(path, f"cannot decode {image_format} data ({error})") from error


def _read_header(data: bytes, path: str) -> tuple[str, int, int]:
    """Format and declared size from the header alone (PIL parses headers lazily, without decoding)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return str(image.format), image.width, image.height
    except Image.DecompressionBombError as error:
        raise BadImageError(path, f"decompression bomb refused ({error})") from error
    except Exception as error:  # PIL raises many types on malformed headers
        raise BadImageError(path, f"not a readable image ({error})") from error


def _decode_with_torchvision(data: bytes, channels: int) -> torch.Tensor:
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    image = decode_image(encoded, mode=mode, apply_exif_orientation=True)
    if image.dtype == torch.uint16:  # 16-bit PNG: scale 0..65535 onto 0..255 with rounding
        image = torch.div(image.to(torch.int32) * 255 + 32767, 65535, rounding_mode="floor").to(torch.uint8)
    if image.shape[0] != channels:  # some decoders (WebP) ignore a GRAY request
        image = rgb_to_grayscale(image[:3]) if channels == 1 else image[:1].expand(3, -1, -1).contiguous()
    return image


def _decode_with_pil(data: bytes, channels: int) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened)
        image.load()
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _high_bit_depth_to_8bit(image)
    image = image.convert("RGB" if channels == 3 else "L")
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _high_bit_depth_to_8bit(image: Image.Image) -> Image.Image:
    """Scale a 16-bit (or 32-bit integer/float) single-channel image onto 0..255; PIL's convert would clip."""
    array = np.asarray(image).astype(np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
    return Image.fromarray(np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8))
