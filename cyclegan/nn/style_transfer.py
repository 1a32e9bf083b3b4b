"""The seed document's fast style-transfer network (Johnson et al. 2016): 9x9 conv 32, 3x3/2 convs to
64 and 128, residual blocks, two 2x upsamplings back, 9x9 conv and tanh."""

from __future__ import annotations

import torch
from torch import nn

from cyclegan.nn.layers import (
    UPSAMPLES,
    NormChoice,
    check_choice,
    check_count,
    make_upsample,
    residual_forward,
)


class ResidualBlock(nn.Module):
    """``x + block(x)``, ``block`` = [conv 3x3, norm, relu, conv 3x3, norm] with zero padding (seed keys)."""

    def __init__(self, channels: int, *, norm: NormChoice) -> None:
        super().__init__()
        bias = norm.conv_bias(True)
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=bias),
            *norm.norm_act(channels, "relu"),
            nn.Conv2d(channels, channels, 3, padding=1, bias=bias),
            norm.norm_layer(channels),
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
        for name, value in (("input_nc", input_nc), ("output_nc", output_nc), ("ngf", ngf)):
            check_count(name, value, 1)
        check_count("n_blocks", n_blocks, 0)
        check_choice("upsample", upsample, UPSAMPLES)
        norm = norm or NormChoice()
        bias = norm.conv_bias(True)
        self.encoder = nn.Sequential(
            nn.Conv2d(input_nc, ngf, 9, padding=4, bias=bias),
            *norm.norm_act(ngf, "relu"),
            nn.Conv2d(ngf, ngf * 2, 3, stride=2, padding=1, bias=bias),
            *norm.norm_act(ngf * 2, "relu"),
            nn.Conv2d(ngf * 2, ngf * 4, 3, stride=2, padding=1, bias=bias),
            *norm.norm_act(ngf * 4, "relu"),
        )
        self.residual = nn.Sequential(*[ResidualBlock(ngf * 4, norm=norm) for _ in range(n_blocks)])
        self.decoder = nn.Sequential(
            make_upsample(ngf * 4, ngf * 2, upsample=upsample, bias=bias),
            *norm.norm_act(ngf * 2, "relu"),
            make_upsample(ngf * 2, ngf, upsample=upsample, bias=bias),
            *norm.norm_act(ngf, "relu"),
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
