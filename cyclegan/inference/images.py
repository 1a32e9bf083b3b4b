"""Image files and PIL images to network tensors in [-1, 1] and back, keeping alpha aside.

Files are decoded by the data pipeline's decoder (`cyclegan.data.decode`), so training and inference
see the same pixels: EXIF orientation applied, 16-bit precision kept, bombs and damaged files refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from cyclegan.data.decode import (
    DEFAULT_MAX_IMAGE_PIXELS,
    BadImageError,
    DecodedImage,
    decode_pixels,
    pil_pixels,
)

# Formats whose writers keep an alpha channel; others get the translated colour only.
_ALPHA_EXTENSIONS = (".png", ".tif", ".tiff", ".webp")
_JPEG_EXTENSIONS = (".jpg", ".jpeg")
DEFAULT_JPEG_QUALITY = 95


@dataclass
class NetworkImage:
    """An image for the generator: ``tensor`` (C, H, W) in [-1, 1]; ``alpha`` (H, W) uint8 or None."""

    tensor: torch.Tensor
    alpha: np.ndarray | None


def _check_channels(input_nc: int) -> None:
    if input_nc not in (1, 3):
        raise ValueError(f"image conversion supports input_nc 1 or 3, the network wants {input_nc}")


def to_network(decoded: DecodedImage) -> NetworkImage:
    """Decoded pixels (8 or 16 bit) as a float tensor in [-1, 1], alpha kept aside."""
    top = 65535.0 if decoded.color.dtype == torch.uint16 else 255.0
    tensor = decoded.color.to(torch.float32) * (2.0 / top) - 1.0
    alpha = None if decoded.alpha is None else decoded.alpha.numpy()
    return NetworkImage(tensor=tensor, alpha=alpha)


def pil_to_network(image: Image.Image, input_nc: int) -> NetworkImage:
    """Convert any PIL mode to ``input_nc`` channels (1: gray, 3: RGB), splitting off an alpha channel."""
    _check_channels(input_nc)
    return to_network(pil_pixels(image, input_nc, with_alpha=True))


def read_network_image(
    path: Path,
    input_nc: int,
    *,
    resize: int | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> NetworkImage:
    """Decode an image file for a generator taking ``input_nc`` channels, optionally resized so that its
    shorter side is ``resize`` pixels. Raises BadImageError naming the file when it cannot be used."""
    _check_channels(input_nc)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BadImageError(str(path), f"cannot read the file ({error})") from error
    image = to_network(decode_pixels(data, str(path), input_nc, max_pixels, with_alpha=True))
    return image if resize is None else resize_shorter_side(image, resize)


def network_to_pil(tensor: torch.Tensor, alpha: np.ndarray | None = None) -> Image.Image:
    """Turn a (C, H, W) tensor in [-1, 1] (C = 1 or 3) into an 8-bit L/RGB image, re-attaching ``alpha``."""
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(f"expected a (1 or 3, H, W) tensor, got shape {tuple(tensor.shape)}")
    unit = ((tensor.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    array = unit.numpy()
    image = (
        Image.fromarray(array[0], "L") if array.shape[0] == 1 else Image.fromarray(array.transpose(1, 2, 0))
    )
    if alpha is None:
        return image
    if alpha.shape != (image.height, image.width):
        alpha = np.asarray(Image.fromarray(alpha).resize(image.size, Image.Resampling.BILINEAR))
    image.putalpha(Image.fromarray(alpha, "L"))
    return image


def write_image(image: Image.Image, path: Path, *, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> None:
    """Write ``image`` in the format ``path``'s extension names, dropping alpha where the format has none;
    JPEG at ``jpeg_quality`` (PIL's default of 75 visibly blurs a translation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix not in _ALPHA_EXTENSIONS and image.mode in ("RGBA", "LA"):
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    options = {"quality": jpeg_quality} if suffix in _JPEG_EXTENSIONS else {}
    image.save(path, **options)


def resize_shorter_side(image: NetworkImage, size: int) -> NetworkImage:
    """Resize so that the shorter side is ``size`` pixels, keeping the aspect ratio (bicubic with
    antialiasing, as the data pipeline resizes); alpha follows (bilinear)."""
    height, width = image.tensor.shape[-2:]
    scale = size / min(width, height)
    new_size = [max(1, round(height * scale)), max(1, round(width * scale))]
    if new_size == [height, width]:
        return image
    tensor = F.resize(image.tensor, new_size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    alpha = image.alpha
    if alpha is not None:
        alpha = np.asarray(Image.fromarray(alpha).resize(new_size[::-1], Image.Resampling.BILINEAR))
    return NetworkImage(tensor=tensor.clamp(-1.0, 1.0), alpha=alpha)
