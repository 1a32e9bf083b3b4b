"""Full-resolution inference: reflect-pad to the size a generator needs, then crop back."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def size_multiple_of(generator: nn.Module) -> int:
    """The side-length multiple ``generator`` needs (ResNet: 4, U-Net: 2**num_downs); 1 when it names none."""
    return int(getattr(generator, "size_multiple", 1))


def reflect_pad(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad (N, C, H, W) on the bottom and right up to multiples of ``multiple``.

    Reflection needs each pad to be smaller than its side, so a side must be at least ``multiple // 2 + 1``
    pixels for the worst case; written with plain shape arithmetic so it exports with dynamic shapes.
    """
    height, width = image.shape[-2], image.shape[-1]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    return F.pad(image, [0, pad_w, 0, pad_h], mode="reflect")


class PadCropGenerator(nn.Module):
    """A generator that takes images of any size: reflect-pads to ``multiple``, runs, crops back.

    ``load_generator`` returns this wrapper and the exporters write it, so every way of running a model
    translates at full resolution. ``input_nc`` / ``output_nc`` say which images it expects and makes.
    """

    def __init__(self, generator: nn.Module, multiple: int, input_nc: int, output_nc: int) -> None:
        super().__init__()
        self.generator = generator
        self.multiple = multiple
        self.input_nc = input_nc
        self.output_nc = output_nc

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2], image.shape[-1]
        return self.generator(reflect_pad(image, self.multiple))[..., :height, :width]
