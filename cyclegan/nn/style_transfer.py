"""The seed document's fast style-transfer network (Johnson et al. 2016): 9x9 conv 32, 3x3/2 convs to
64 and 128, residual blocks, two 2x upsamplings back, 9x9 conv and tanh."""

from __future__ import annotations

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


class ResidualBlock(nn.Module):
    """``x + block(x)``, ``block`` = [conv 3x3, norm, relu, conv 3x3, norm] with zero padding (seed keys)."""

    def __init__(self, channels: int, *, norm: NormChoice) -> None:
        super().__init__()
        self.block = nn.Sequential(
            *residual_layers(channels, norm=norm, padding_type="zero", use_dropout=False)
        )
        self.fuse_residual = norm.fuses

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return residual_forward(self.block, x, self.fuse_residual)


class StyleTransferNetwork(nn.Module):
    """``encoder`` (ngf, 2ngf, 4ngf channels; the seed's ngf is 32), ``residual`` (``n_blocks``, seed 5),
    ``decoder`` (two 2x upsamplings, 9x9 conv, tanh). Output sizes are the input's rounded up to 4."""

    role = "generator"
    size_multiple = 4

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 32,
        n_blocks: int = 5,
        *,
        norm: NormChoice | None = None,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        check_generator_args(input_nc, output_nc, ngf, n_blocks, upsample=upsample)
        norm = norm or NormChoice()
        self.encoder = nn.Sequential(
            nn.Conv2d(input_nc, ngf, 9, padding=4, bias=norm.conv_bias(True)),
            *norm.norm_act(ngf, "relu"),
            *downsample_stage(ngf, ngf * 2, norm=norm),
            *downsample_stage(ngf * 2, ngf * 4, norm=norm),
        )
        self.residual = nn.Sequential(*[ResidualBlock(ngf * 4, norm=norm) for _ in range(n_blocks)])
        self.decoder = nn.Sequential(
            *upsample_stage(ngf * 4, ngf * 2, norm=norm, upsample=upsample),
            *upsample_stage(ngf * 2, ngf, norm=norm, upsample=upsample),
            nn.Conv2d(ngf, output_nc, 9, padding=4),
            nn.Tanh(),
        )
        self.spec = {
            "arch": "style_transfer",
            "layout": norm.layout,
            "input_nc": input_nc,
            "output_nc": output_nc,
            "ngf": ngf,
            "norm": norm.norm,
            "n_blocks": n_blocks,
            "upsample": upsample,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.residual(self.encoder(x)))
