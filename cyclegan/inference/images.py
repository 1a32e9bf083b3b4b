"""Image files and PIL images to network tensors in [-1, 1] and back, keeping alpha aside."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Formats whose writers keep an alpha channel; others get the translated colour only.
_ALPHA_EXTENSIONS = (".png", ".tif", ".tiff", ".webp")


@dataclass
class NetworkImage:
    """An image for the generator: ``tensor`` (C, H, W) in [-1, 1]; ``alpha`` (H, W) uint8 or None."""

    tensor: torch.Tensor
    alpha: np.ndarray | None


def _to_unit_array(image: Image.Image) -> np.ndarray:
    """Pixel values of an L or RGB image (8-bit) or a 16-bit/float grayscale image as float32 in [0, 1]."""
    if image.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(image, dtype=np.uint16).astype(np.float32) / 65535.0
    if image.mode == "I":
        values = np.asarray(image, dtype=np.int64)
        scale = 65535.0 if values.max(initial=0) > 255 else 255.0
        return np.clip(values / scale, 0.0, 1.0).astype(np.float32)
    if image.mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return np.asarray(image, dtype=np.float32) / 255.0


def pil_to_network(image: Image.Image, input_nc: int) -> NetworkImage:
    """Convert any PIL mode to ``input_nc`` channels (1: gray, 3: RGB), splitting off an alpha channel."""
    if input_nc not in (1, 3):
        raise ValueError(f"image conversion supports input_nc 1 or 3, the network wants {input_nc}")
    alpha = None
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.uint8).copy()
    high_depth_gray = image.mode in ("I;16", "I;16B", "I;16L", "I", "F")
    if input_nc == 1:
        color = image if high_depth_gray else image.convert("L")
        array = _to_unit_array(color)[None]
    else:
        if high_depth_gray:
            gray = _to_unit_array(image)
            array = np.repeat(gray[None], 3, axis=0)
        else:
            array = _to_unit_array(image.convert("RGB")).transpose(2, 0, 1)
    tensor = torch.from_numpy(np.ascontiguousarray(array)) * 2.0 - 1.0
    return NetworkImage(tensor=tensor, alpha=alpha)


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


def read_image(path: str | Path) -> Image.Image:
    """Decode an image file fully (so that truncated files fail here, not later)."""
    with Image.open(path) as image:
        image.load()
        return image.copy()


def write_image(image: Image.Image, path: Path) -> None:
    """Write ``image`` in the format ``path``'s extension names, dropping alpha where the format has none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() not in _ALPHA_EXTENSIONS and image.mode in ("RGBA", "LA"):
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    image.save(path)


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Resize so that the shorter side is ``size`` pixels, keeping the aspect ratio (bicubic)."""
    width, height = image.size
    scale = size / min(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size == image.size:
        return image
    return image.resize(new_size, Image.Resampling.BICUBIC)
