"""PatchGAN discriminators: the n-layer PatchGAN (basic = 3 layers, 70x70 patches) and the 1x1 PixelGAN."""

from __future__ import annotations

import torch
from torch import nn

from cyclegan.errors import check_int
from cyclegan.nn.layers import NormChoice


class NLayerDiscriminator(nn.Module):
    """Conv 4x4/2 + LeakyReLU, ``n_layers - 1`` [conv 4x4/2, norm, LeakyReLU], one [conv 4x4/1, norm,
    LeakyReLU], conv 4x4/1 to 1 channel. Channels ndf * min(2^i, 8). Keys ``model.0`` ... ``model.3n+2``."""

    role = "discriminator"

    def __init__(
        self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, *, norm: NormChoice | None = None
    ) -> None:
        super().__init__()
        check_int("input_nc", input_nc, 1)
        check_int("ndf", ndf, 1)
        check_int("n_layers", n_layers, 1)
        norm = norm or NormChoice()
        bias = norm.conv_bias(True)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * previous, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                *norm.norm_act(ndf * mult, "leaky_relu"),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        self.spec = {
            "arch": "n_layers",
            "layout": norm.layout,
            "input_nc": input_nc,
            "ndf": ndf,
            "n_layers": n_layers,
            "norm": norm.norm,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN (PixelGAN): conv 1x1 ndf, LeakyReLU, conv 1x1 2ndf, norm, LeakyReLU, conv 1x1 to 1."""

    role = "discriminator"

    def __init__(self, input_nc: int = 3, ndf: int = 64, *, norm: NormChoice | None = None) -> None:
        super().__init__()
        check_int("input_nc", input_nc, 1)
        check_int("ndf", ndf, 1)
        norm = norm or NormChoice()
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, ndf * 2, 1, bias=norm.conv_bias(True)),
            *norm.norm_act(ndf * 2, "leaky_relu"),
            nn.Conv2d(ndf * 2, 1, 1, bias=norm.conv_bias(False)),
        )
        self.spec = {
            "arch": "pixel",
            "layout": norm.layout,
            "input_nc": input_nc,
            "ndf": ndf,
            "norm": norm.norm,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
