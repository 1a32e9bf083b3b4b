"""The Python API: translate tensors or PIL images with a generator (or a checkpoint path)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from cyclegan.inference.checkpoints import load_generator
from cyclegan.inference.devices import autocast_for, module_device, resolve_device
from cyclegan.inference.images import network_to_pil, pil_to_network
from cyclegan.inference.padding import PadCropGenerator
from cyclegan.inference.tiling import tiled_forward


def _input_channels(module: nn.Module) -> int:
    if hasattr(module, "input_nc"):
        return int(module.input_nc)
    first_conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is None:
        raise ValueError(
            "cannot tell how many input channels the generator takes; pass one from load_generator"
        )
    return first_conv.in_channels


def run_batch(
    generator: nn.Module,
    batch: torch.Tensor,
    *,
    precision: str = "32",
    tile_size: int | None = None,
    tile_overlap: int | None = None,
) -> torch.Tensor:
    """Translate an (N, C, H, W) batch in [-1, 1]; returns float32 on ``batch``'s device.

    With ``tile_size`` the image is translated tile by tile (see `cyclegan.inference.tiling`); that needs
    an nn.Module generator from `load_generator` (not TorchScript or ONNX), whose InstanceNorm layers it
    hooks.
    """
    device = module_device(generator)
    with torch.inference_mode(tile_size is None), autocast_for(precision, device):
        if tile_size is None:
            return generator(batch.to(device)).float().to(batch.device)
        if not isinstance(generator, PadCropGenerator):
            raise ValueError(
                "tiled inference (tile_size) needs a generator loaded from a checkpoint, reference weights "
                "or safetensors; TorchScript and ONNX files cannot be tiled (their layers cannot be hooked)"
            )
        return tiled_forward(generator.generator, batch, generator.multiple, tile_size, tile_overlap).float()


def translate(
    generator: nn.Module | str | Path,
    images: torch.Tensor | Image.Image | Sequence[Image.Image] | Sequence[torch.Tensor],
    *,
    direction: str = "AtoB",
    device: str | torch.device | None = None,
    batch_size: int = 8,
    precision: str = "32",
    tile_size: int | None = None,
    tile_overlap: int | None = None,
) -> torch.Tensor | Image.Image | list[Image.Image] | list[torch.Tensor]:
    """Translate images and return the same kind: a (C, H, W) or (N, C, H, W) tensor in [-1, 1], a PIL
    image, or a list of either. Any size works (padded and cropped back); PIL images of any mode are
    converted to the generator's channels and keep their alpha channel.

    ``generator`` is a module from `load_generator` or a checkpoint/export path (then loaded for
    ``direction``). ``device`` defaults to the generator's (``"auto"`` for a path).
    """
    if isinstance(generator, (str, Path)):
        generator = load_generator(generator, direction, device=resolve_device(device or "auto"))
    elif device is not None:
        generator = generator.to(resolve_device(device))
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    options = {"precision": precision, "tile_size": tile_size, "tile_overlap": tile_overlap}

    if isinstance(images, torch.Tensor):
        if images.dim() == 3:
            return run_batch(generator, images.unsqueeze(0), **options)[0]
        if images.dim() != 4:
            raise ValueError(f"expected a (C, H, W) or (N, C, H, W) tensor, got shape {tuple(images.shape)}")
        chunks = [run_batch(generator, chunk, **options) for chunk in images.split(batch_size)]
        return torch.cat(chunks)
    if isinstance(images, Image.Image):
        return translate(generator, [images], batch_size=1, **options)[0]
    images = list(images)
    if all(isinstance(image, torch.Tensor) for image in images):
        return [translate(generator, image, **options) for image in images]
    if not all(isinstance(image, Image.Image) for image in images):
        raise TypeError("images must be a tensor, a PIL image, or a list of tensors or of PIL images")
    input_nc = _input_channels(generator)
    results = []
    for image in images:
        prepared = pil_to_network(image, input_nc)
        output = run_batch(generator, prepared.tensor.unsqueeze(0), **options)[0]
        results.append(network_to_pil(output, prepared.alpha))
    return results
