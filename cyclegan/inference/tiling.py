"""Tiled inference for images too large to translate at once, equal to whole-image inference.

Two things make naive tiling differ from running the whole image:

* Convolutions near a tile's edge see the tile's padding instead of the neighbouring pixels. Each tile is
  therefore extended by a context margin at least the generator's receptive-field radius (measured, see
  `receptive_radius`), and only its inner "core" is kept. Cores are then exact, so they are stitched
  side by side; blending overlaps would only mix in the inexact margins.
* InstanceNorm normalizes with statistics over the whole image; per-tile statistics give visible seams.
  The statistics are computed layer by layer over the whole image: pass ``k`` runs every tile up to the
  ``k``-th norm layer (earlier layers already use whole-image statistics), accumulates that layer's
  per-channel (count, mean, M2) over the tiles' cores (Chan et al.'s parallel update) and stops there.
  With all layers known, a last pass produces the output. A generator with L norm layers costs L + 1
  passes of which the k-th runs only the layers up to the k-th norm: about L / 2 + 1 forwards of every
  tile (resnet_9blocks: L = 23, receptive radius 83 px), the price of exactness with bounded memory.

Tile borders sit on multiples of the generator's size multiple, so downsampled grids line up with the
whole image's and every layer's core is an exact sub-block of the whole-image activation.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from cyclegan.inference.devices import module_device
from cyclegan.inference.padding import reflect_pad
from cyclegan.nn import ImageStatisticsBatchNorm2d, InstanceNorm2d
from cyclegan.ops.reference import apply_activation

_RADIUS_CACHE: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()
_MAX_PROBE_SIZE = 2048


class _StopForward(Exception):
    """Raised by the layer whose statistics a pass collects, to skip the rest of the network."""


@dataclass(frozen=True)
class Tile:
    """A tile's extent ``[y0, y1) x [x0, x1)`` and the core ``[cy0, cy1) x [cx0, cx1)`` it contributes."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int


def plan_tiles(height: int, width: int, core: int, context: int) -> list[Tile]:
    """Cores of side ``core`` partition the (padded) image; a tile is its core plus ``context`` pixels."""
    tiles = []
    for cy0 in range(0, height, core):
        cy1 = min(cy0 + core, height)
        for cx0 in range(0, width, core):
            cx1 = min(cx0 + core, width)
            tiles.append(
                Tile(
                    max(cy0 - context, 0),
                    min(cy1 + context, height),
                    max(cx0 - context, 0),
                    min(cx1 + context, width),
                    cy0,
                    cy1,
                    cx0,
                    cx1,
                )
            )
    return tiles


def _is_instance_norm(module: nn.Module) -> bool:
    """Whether ``module`` normalizes each image by its own statistics (BatchNorm in ``image`` mode does)."""
    if isinstance(module, (InstanceNorm2d, ImageStatisticsBatchNorm2d)):
        return True
    return isinstance(module, nn.InstanceNorm2d) and not module.track_running_stats


def _normalize(
    layer: nn.Module, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, residual: torch.Tensor | None
) -> torch.Tensor:
    """What ``layer`` computes, with the given per-(sample, channel) statistics instead of its own."""
    shape = (*mean.shape, 1, 1)
    z = (x.float() - mean.float().view(shape)) * torch.rsqrt(var.float().view(shape) + layer.eps)
    if layer.weight is not None:
        z = z * layer.weight.float().view(1, -1, 1, 1)
    if layer.bias is not None:
        z = z + layer.bias.float().view(1, -1, 1, 1)
    z = apply_activation(z, getattr(layer, "activation", None), getattr(layer, "negative_slope", 0.2))
    if residual is not None:
        z = z + residual.float()
    return z.to(x.dtype)


@contextmanager
def _routed_norms(generator: nn.Module, forward_fn) -> Iterator[list[nn.Module]]:
    """Route every InstanceNorm layer's forward through ``forward_fn(layer, x, residual)`` while inside."""
    layers = [module for module in generator.modules() if _is_instance_norm(module)]
    for layer in layers:
        layer.forward = lambda x, residual=None, _layer=layer: forward_fn(_layer, x, residual)
    try:
        yield layers
    finally:
        for layer in layers:
            del layer.forward


def receptive_radius(generator: nn.Module, input_nc: int, multiple: int) -> int:
    """How far (in input pixels) an output pixel sees, with normalization statistics held fixed.

    Measured from the gradient of a centre block of ``multiple`` x ``multiple`` output pixels (every phase of
    the strided layers) with respect to the input, growing the probe until the gradient no longer reaches
    its border; cached per generator.
    """
    if generator in _RADIUS_CACHE:
        return _RADIUS_CACHE[generator]

    def frozen_stats(layer: nn.Module, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        detached = x.detach().double()
        mean = detached.mean(dim=(2, 3))
        var = detached.var(dim=(2, 3), unbiased=False)
        return _normalize(layer, x, mean, var, residual)

    device = module_device(generator)
    size = max(64, 2 * multiple)
    while size <= _MAX_PROBE_SIZE:
        probe = torch.randn(1, input_nc, size, size, device=device, requires_grad=True)
        with torch.enable_grad(), _routed_norms(generator, frozen_stats):
            output = generator(probe)
            centre = size // 2 // multiple * multiple
            output[..., centre : centre + multiple, centre : centre + multiple].sum().backward()
        reach = probe.grad.abs().sum(dim=(0, 1)) > 0
        rows = reach.any(dim=1).nonzero().flatten()
        cols = reach.any(dim=0).nonzero().flatten()
        last = centre + multiple - 1
        radius = int(max(centre - rows.min(), rows.max() - last, centre - cols.min(), cols.max() - last))
        if radius < centre - 1:
            _RADIUS_CACHE[generator] = radius
            return radius
        size *= 2
    raise ValueError(
        f"the generator's receptive field exceeds {_MAX_PROBE_SIZE} pixels (e.g. a U-Net's bottleneck sees "
        "the whole image): tiled inference cannot be exact; translate without tiling"
    )


class _RunningStats:
    """Per-(sample, channel) count, mean and M2 accumulated block by block in float64 (Chan et al.)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, block: torch.Tensor) -> None:
        values = block.double().flatten(2)
        count = values.shape[-1]
        mean = values.mean(dim=-1)
        m2 = (values - mean.unsqueeze(-1)).square().sum(dim=-1)
        if self.mean is None:
            self.count, self.mean, self.m2 = count, mean, m2
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * count / total)
        self.count = total

    def mean_and_variance(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean, self.m2 / self.count


def _core_of(x: torch.Tensor, tile: Tile) -> torch.Tensor:
    """The part of a layer's input (at any resolution) that lies in the tile's core."""
    scale_y = x.shape[-2] / (tile.y1 - tile.y0)
    scale_x = x.shape[-1] / (tile.x1 - tile.x0)
    top, bottom = round((tile.cy0 - tile.y0) * scale_y), round((tile.cy1 - tile.y0) * scale_y)
    left, right = round((tile.cx0 - tile.x0) * scale_x), round((tile.cx1 - tile.x0) * scale_x)
    return x[..., top:bottom, left:right]


@torch.no_grad()
def tiled_forward(
    generator: nn.Module, image: torch.Tensor, multiple: int, tile_size: int, context: int | None = None
) -> torch.Tensor:
    """Translate (N, C, H, W) tile by tile with whole-image InstanceNorm statistics, onto ``image``'s device.

    ``generator`` is the bare network (not the pad/crop wrapper); ``tile_size`` is the core side and
    ``context`` the margin added around it (default: the measured receptive radius). Tiles run on the
    generator's device, so only the input and output need to fit in ``image``'s (host) memory.
    """
    if tile_size < 1:
        raise ValueError(f"tile_size must be a positive number of pixels, got {tile_size}")
    if context is not None and context < 0:
        raise ValueError(f"tile_overlap must be 0 or more pixels (null: exact result), got {context}")
    device = module_device(generator, image.device)
    height, width = image.shape[-2:]
    padded = reflect_pad(image, multiple)
    core = math.ceil(tile_size / multiple) * multiple
    if context is None:
        context = receptive_radius(generator, image.shape[1], multiple) + 1
    context = math.ceil(context / multiple) * multiple
    tiles = plan_tiles(padded.shape[-2], padded.shape[-1], core, context)

    stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
    collecting: dict[str, object] = {}

    def with_whole_image_stats(
        layer: nn.Module, x: torch.Tensor, residual: torch.Tensor | None
    ) -> torch.Tensor:
        if layer in stats:
            mean, var = stats[layer]
            return _normalize(layer, x, mean, var, residual)
        if collecting.setdefault("layer", layer) is not layer:
            raise RuntimeError("norm layers ran in a different order on different tiles")
        collecting["stats"].add(_core_of(x, collecting["tile"]))
        raise _StopForward

    with _routed_norms(generator, with_whole_image_stats) as layers:
        while len(stats) < len(layers):
            collecting.clear()
            collecting["stats"] = _RunningStats()
            for tile in tiles:
                collecting["tile"] = tile
                try:
                    generator(padded[..., tile.y0 : tile.y1, tile.x0 : tile.x1].to(device))
                except _StopForward:
                    continue
            if "layer" not in collecting:  # the remaining layers never run
                break
            stats[collecting["layer"]] = collecting["stats"].mean_and_variance()

        output = None
        for tile in tiles:
            result = generator(padded[..., tile.y0 : tile.y1, tile.x0 : tile.x1].to(device))
            if output is None:
                output = torch.empty(
                    *result.shape[:2], *padded.shape[-2:], dtype=image.dtype, device=image.device
                )
            core = result[
                ..., tile.cy0 - tile.y0 : tile.cy1 - tile.y0, tile.cx0 - tile.x0 : tile.cx1 - tile.x0
            ]
            output[..., tile.cy0 : tile.cy1, tile.cx0 : tile.cx1] = core.to(image.device, image.dtype)
    return output[..., :height, :width]
