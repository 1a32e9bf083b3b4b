"""Building blocks shared by the networks: the norm/layout choice, padding, upsampling, fused residual."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cyclegan.errors import check_choice, check_int
from cyclegan.nn.norm import InstanceNorm2d

NORMS = ("instance", "batch", "none")
LAYOUTS = ("seed", "reference")
PADDING_TYPES = ("reflect", "replicate", "zero")
UPSAMPLES = ("transpose", "resize")


def make_activation(activation: str) -> nn.Module:
    """The standalone activation module: "relu" or "leaky_relu" (slope 0.2, as everywhere in CycleGAN)."""
    return nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.2)


@dataclass(frozen=True)
class NormChoice:
    """Which normalization a network uses, in which parameter layout, on which InstanceNorm backend.

    ``seed`` layout: affine InstanceNorm and no bias on a conv that feeds a norm (the norm cancels it).
    ``reference`` layout: InstanceNorm without affine and ``bias=use_bias`` convs exactly as the
    reference builds them (``use_bias`` is True only for InstanceNorm, so norm="none" convs have none).
    """

    norm: str = "instance"
    layout: str = "seed"
    backend: str = "auto"

    def __post_init__(self) -> None:
        check_choice("norm", self.norm, NORMS, what="normalization")
        check_choice("layout", self.layout, LAYOUTS, what="parameter layout")

    @property
    def fuses(self) -> bool:
        """True when the norm is our InstanceNorm, which fuses the activation and the residual add."""
        return self.norm == "instance"

    def conv_bias(self, feeds_norm: bool) -> bool:
        """Bias flag of a conv the reference builds with ``bias=use_bias``."""
        if self.layout == "reference":
            return self.norm == "instance"
        return not feeds_norm or self.norm == "none"

    def norm_layer(self, channels: int, activation: str | None = None) -> nn.Module:
        """The norm module; ``activation`` is fused into it (only valid when ``fuses``)."""
        if self.norm == "instance":
            return InstanceNorm2d(
                channels, affine=self.layout == "seed", activation=activation, backend=self.backend
            )
        if activation is not None:
            raise ValueError(f"norm={self.norm!r} cannot fuse an activation")
        return nn.BatchNorm2d(channels) if self.norm == "batch" else nn.Identity()

    def norm_act(self, channels: int, activation: str) -> list[nn.Module]:
        """``[norm, activation]`` at the reference's two indices; a fused activation leaves Identity."""
        if self.fuses:
            return [self.norm_layer(channels, activation), nn.Identity()]
        return [self.norm_layer(channels), make_activation(activation)]


def make_pad(padding_type: str, size: int) -> nn.Module | None:
    """The padding layer for ``padding_type``; None for "zero", where the conv pads instead."""
    if padding_type == "reflect":
        return nn.ReflectionPad2d(size)
    if padding_type == "replicate":
        return nn.ReplicationPad2d(size)
    return None


class ResizeConv2d(nn.Conv2d):
    """Nearest-neighbour 2x upsampling then a 3x3 conv: the checkerboard-free stand-in for a
    stride-2 transposed conv (Odena et al. 2016). Its parameters sit where the transposed conv's were."""

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool, padding_type: str) -> None:
        padding_mode = "zeros" if padding_type == "zero" else padding_type
        super().__init__(in_channels, out_channels, 3, padding=1, bias=bias, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def make_upsample(
    in_channels: int, out_channels: int, *, upsample: str, bias: bool, padding_type: str = "zero"
) -> nn.Module:
    """A 2x upsampling layer: transposed conv 3x3/2 (reference) or resize + conv ("resize")."""
    if upsample == "transpose":
        return nn.ConvTranspose2d(
            in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=bias
        )
    return ResizeConv2d(in_channels, out_channels, bias=bias, padding_type=padding_type)


def check_generator_args(
    input_nc: object,
    output_nc: object,
    ngf: object,
    n_blocks: object,
    *,
    upsample: str,
    padding_type: str | None = None,
) -> None:
    """Validate the arguments the encoder / residual blocks / decoder generators share."""
    for name, value in (("input_nc", input_nc), ("output_nc", output_nc), ("ngf", ngf)):
        check_int(name, value, 1)
    check_int("n_blocks", n_blocks, 0)
    if padding_type is not None:
        check_choice("padding_type", padding_type, PADDING_TYPES, what="padding")
    check_choice("upsample", upsample, UPSAMPLES, what="upsampling")


def downsample_stage(in_channels: int, out_channels: int, *, norm: NormChoice) -> list[nn.Module]:
    """A stride-2 conv 3x3 followed by its norm and ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=norm.conv_bias(True)),
        *norm.norm_act(out_channels, "relu"),
    ]


def upsample_stage(
    in_channels: int, out_channels: int, *, norm: NormChoice, upsample: str, padding_type: str = "zero"
) -> list[nn.Module]:
    """A 2x upsampling layer (see ``make_upsample``) followed by its norm and ReLU."""
    layer = make_upsample(
        in_channels, out_channels, upsample=upsample, bias=norm.conv_bias(True), padding_type=padding_type
    )
    return [layer, *norm.norm_act(out_channels, "relu")]


def residual_layers(dim: int, *, norm: NormChoice, padding_type: str, use_dropout: bool) -> list[nn.Module]:
    """A residual block's body: [pad, conv 3x3, norm, relu, (dropout), pad, conv 3x3, norm]; with zero
    padding the convs pad themselves and the pad layers are absent (the reference's indices)."""
    layers: list[nn.Module] = []
    for second in (False, True):
        pad = make_pad(padding_type, 1)
        if pad is not None:
            layers.append(pad)
        layers.append(nn.Conv2d(dim, dim, 3, padding=0 if pad else 1, bias=norm.conv_bias(True)))
        if second:
            layers.append(norm.norm_layer(dim))
        else:
            layers += norm.norm_act(dim, "relu")
            if use_dropout:
                layers.append(nn.Dropout(0.5))
    return layers


def residual_forward(block: nn.Sequential, x: torch.Tensor, fused: bool) -> torch.Tensor:
    """``x + block(x)``; when ``fused`` the add runs inside the block's last layer, an InstanceNorm
    (``residual=x``, added after its identity activation: exact)."""
    if not fused:
        return x + block(x)
    h = x
    last = len(block) - 1
    for index, layer in enumerate(block):
        if index < last:
            h = layer(h)
        elif h.dtype == x.dtype:
            h = layer(h, residual=x)
        else:  # mixed dtypes (input outside autocast): the norm's fused add needs one dtype
            h = x + layer(h)
    return h


def conv_norm_pairs(net: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """``(conv_name, norm_name, norm)`` for every conv directly followed by a norm in a Sequential."""
    pairs = []
    for name, module in net.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (conv_key, conv), (norm_key, norm) in itertools.pairwise(children):
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(
                norm, (InstanceNorm2d, nn.BatchNorm2d)
            ):
                prefix = f"{name}." if name else ""
                pairs.append((prefix + conv_key, prefix + norm_key, norm))
    return pairs
