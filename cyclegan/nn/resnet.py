"""The ResNet generator (Johnson et al. 2016 as CycleGAN uses it) with the reference's module indices."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cyclegan.nn.layers import (
    NormChoice,
    check_generator_args,
    downsample_stage,
    residual_forward,
    residual_layers,
    upsample_stage,
)


class ResnetBlock(nn.Module):
    """``x + conv_block(x)`` with ``conv_block`` = [pad, conv 3x3, norm, relu, (dropout), pad, conv 3x3,
    norm]; with zero padding the convs pad themselves and the pad layers are absent (the reference's
    indices). With InstanceNorm the ReLU and the residual add run inside the norms."""

    def __init__(self, dim: int, *, padding_type: str, norm: NormChoice, use_dropout: bool) -> None:
        super().__init__()
        layers = residual_layers(dim, norm=norm, padding_type=padding_type, use_dropout=use_dropout)
        self.conv_block = nn.Sequential(*layers)
        self.fuse_residual = norm.fuses

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return residual_forward(self.conv_block, x, self.fuse_residual)


class ResnetGenerator(nn.Module):
    """7x7 conv, two stride-2 convs, ``n_blocks`` residual blocks, two 2x upsamplings, 7x7 conv, tanh.

    Keys match the reference (``model.1.weight`` ... ``model.{n_blocks + 17}.bias``). ``padding_type``
    applies inside the residual blocks and the resize-convs; the 7x7 convs always reflect-pad, as in
    the reference. Output height/width are the input's rounded up to a multiple of 4.

    ``forward(x, layers=...)`` also returns the outputs of the modules ``model[i]`` for ``i`` in
    ``layers`` (CUT's PatchNCE features). With InstanceNorm the ReLU runs inside the norm, so a norm's
    index gives the activated features and the Identity after it the same tensor.
    """

    role = "generator"
    size_multiple = 4

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        *,
        norm: NormChoice | None = None,
        padding_type: str = "reflect",
        use_dropout: bool = False,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        check_generator_args(input_nc, output_nc, ngf, n_blocks, upsample=upsample, padding_type=padding_type)
        norm = norm or NormChoice()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, 7, bias=norm.conv_bias(True)),
            *norm.norm_act(ngf, "relu"),
        ]
        for mult in (1, 2):
            layers += downsample_stage(ngf * mult, ngf * mult * 2, norm=norm)
        for _ in range(n_blocks):
            layers.append(ResnetBlock(ngf * 4, padding_type=padding_type, norm=norm, use_dropout=use_dropout))
        for mult in (4, 2):
            layers += upsample_stage(
                ngf * mult, ngf * mult // 2, norm=norm, upsample=upsample, padding_type=padding_type
            )
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.spec = {
            "arch": "resnet",
            "layout": norm.layout,
            "input_nc": input_nc,
            "output_nc": output_nc,
            "ngf": ngf,
            "norm": norm.norm,
            "n_blocks": n_blocks,
            "padding_type": padding_type,
            "use_dropout": use_dropout,
            "upsample": upsample,
        }

    def _check_layers(self, layers: Sequence[int]) -> None:
        count = len(self.model)
        if not layers or any(not isinstance(i, int) or not 0 <= i < count for i in layers):
            raise ValueError(
                f"feature layers must be a non-empty list of indices into the generator's {count} modules "
                f"(0 to {count - 1}), got {list(layers)}"
            )

    def feature_channels(self, layers: Sequence[int]) -> list[int]:
        """The channel count of the output of each ``model[i]``, ``i`` in ``layers``, without running it."""
        self._check_layers(layers)
        channels, per_index = self.spec["input_nc"], []
        for module in self.model:
            channels = getattr(module, "out_channels", channels)  # convs change it; the rest keep it
            per_index.append(channels)
        return [per_index[i] for i in layers]

    def forward(
        self, x: torch.Tensor, layers: Sequence[int] | None = None, *, encode_only: bool = False
    ) -> torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The translation of ``x``; with ``layers`` also the outputs of ``model[i]`` for ``i`` in
        ``layers`` (in that order): ``(translation, features)``, or with ``encode_only`` the features
        alone, computed only up to the last of those modules."""
        if layers is None:
            return self.model(x)
        self._check_layers(layers)
        wanted, last = set(layers), max(layers)
        captured = {}
        for index, module in enumerate(self.model):
            x = module(x)
            if index in wanted:
                captured[index] = x
            if encode_only and index == last:
                break
        features = [captured[index] for index in layers]
        return features if encode_only else (x, features)
