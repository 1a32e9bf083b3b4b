"""The U-Net generator (pix2pix) as nested skip blocks, with the reference's module indices."""

from __future__ import annotations

import torch
from torch import nn

from cyclegan.errors import check_int
from cyclegan.nn.layers import NormChoice


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: ``cat([a, up(submodule(down(a)))])`` with ``a = leaky_relu(x)``.

    ``model`` holds the reference's list: outermost [downconv, submodule, relu, upconv, tanh];
    innermost [lrelu, downconv, relu, upconv, upnorm]; others [lrelu, downconv, downnorm, submodule,
    relu, upconv, upnorm, (dropout)]. The skip carries the activated input, as the reference's in-place
    LeakyReLU makes it (the parent's ReLU on the concatenation makes this equal to a plain skip), so
    the LeakyReLU can run inside the parent's downnorm (``input_activated``), leaving an Identity.
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        *,
        input_nc: int | None = None,
        submodule: UnetSkipConnectionBlock | None = None,
        outermost: bool = False,
        norm: NormChoice,
        use_dropout: bool = False,
        input_activated: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        innermost = submodule is None
        input_nc = outer_nc if input_nc is None else input_nc
        down_act = nn.Identity() if input_activated else nn.LeakyReLU(0.2)
        if outermost:
            layers = [
                nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=norm.conv_bias(False)),
                submodule,
                nn.ReLU(),
                nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1),
                nn.Tanh(),
            ]
        elif innermost:
            layers = [
                down_act,
                nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=norm.conv_bias(False)),
                nn.ReLU(),
                nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=norm.conv_bias(True)),
                norm.norm_layer(outer_nc),
            ]
        else:
            layers = [
                down_act,
                nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=norm.conv_bias(True)),
                norm.norm_layer(inner_nc, "leaky_relu" if norm.fuses else None),
                submodule,
                nn.ReLU(),
                nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=norm.conv_bias(True)),
                norm.norm_layer(outer_nc),
            ]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        skip = h = x
        for index, layer in enumerate(self.model):
            h = layer(h)
            if index == 0:
                skip = h
        return torch.cat([skip, h], 1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` stride-2 levels (unet_256: 8, unet_128: 7); height and width must be
    multiples of ``2 ** num_downs``. Keys nest as the reference's: ``model.model.1.model.3.model...``."""

    role = "generator"

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        *,
        norm: NormChoice | None = None,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("input_nc", input_nc), ("output_nc", output_nc), ("ngf", ngf)):
            check_int(name, value, 1)
        check_int("num_downs", num_downs, 5)
        norm = norm or NormChoice()
        fused = norm.fuses
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm=norm, input_activated=fused)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout, input_activated=fused
            )
        for mult in (4, 2):
            block = UnetSkipConnectionBlock(
                ngf * mult, ngf * mult * 2, submodule=block, norm=norm, input_activated=fused
            )
        # The outermost level's downconv has no norm, so the next level keeps its own LeakyReLU.
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm
        )
        self.size_multiple = 2**num_downs
        self.spec = {
            "arch": "unet",
            "layout": norm.layout,
            "input_nc": input_nc,
            "output_nc": output_nc,
            "ngf": ngf,
            "norm": norm.norm,
            "num_downs": num_downs,
            "use_dropout": use_dropout,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(
                f"U-Net with num_downs={self.spec['num_downs']} needs height and width divisible by "
                f"{self.size_multiple}, got input of shape {tuple(x.shape)}"
            )
        return self.model(x)
