"""``build_generator`` / ``build_discriminator``: networks by name, options checked, weights initialized."""

from __future__ import annotations

from torch import nn

from cyclegan.errors import check_bool, check_choice
from cyclegan.nn.discriminators import NLayerDiscriminator, PixelDiscriminator
from cyclegan.nn.init import init_weights
from cyclegan.nn.layers import NormChoice
from cyclegan.nn.resnet import ResnetGenerator
from cyclegan.nn.style_transfer import StyleTransferNetwork
from cyclegan.nn.unet import UnetGenerator
from cyclegan.ops.instance_norm import BACKENDS

# arch -> (family, settings the name fixes, defaults the caller may change)
_GENERATORS: dict[str, tuple[str, dict, dict]] = {
    "resnet_9blocks": ("resnet", {"n_blocks": 9}, {}),
    "resnet_6blocks": ("resnet", {"n_blocks": 6}, {}),
    "resnet": ("resnet", {}, {"n_blocks": 9}),
    "unet_256": ("unet", {"num_downs": 8}, {}),
    "unet_128": ("unet", {"num_downs": 7}, {}),
    "unet": ("unet", {}, {"num_downs": 8}),
    "style_transfer": ("style_transfer", {}, {"n_blocks": 5}),
}
GENERATOR_ARCHS = tuple(_GENERATORS)
DISCRIMINATOR_ARCHS = ("basic", "n_layers", "pixel")

_COMMON_DEFAULTS = {"norm": "instance", "init_type": "normal", "init_gain": 0.02, "backend": "auto"}
_GENERATOR_DEFAULTS = {
    **_COMMON_DEFAULTS,
    "padding_type": "reflect",
    "use_dropout": False,
    "upsample": "transpose",
    "n_blocks": None,
    "num_downs": None,
}
_FAMILY_OPTIONS = {
    "resnet": {"padding_type", "use_dropout", "upsample", "n_blocks"},
    "unet": {"use_dropout", "num_downs"},
    "style_transfer": {"upsample", "n_blocks"},
}
_DEFAULT_NGF = {"resnet": 64, "unet": 64, "style_transfer": 32}


def _resolve_options(what: str, options: dict, defaults: dict, applicable: set[str]) -> dict:
    """Defaults overlaid with ``options``; unknown names, and set options ``what`` cannot use, raise."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {what}; valid options: {sorted(applicable)}")
    for name, value in options.items():
        if name not in applicable and value is not None and value != defaults[name]:
            raise ValueError(
                f"option {name}={value!r} does not apply to {what} (its options: {sorted(applicable)}); "
                f"leave it at {defaults[name]!r}"
            )
    resolved = {**defaults, **options}
    check_choice("backend", resolved["backend"], BACKENDS, what="InstanceNorm backend")
    check_bool("use_dropout", resolved.get("use_dropout", False))
    return resolved


def build_generator(
    arch: str = "resnet_9blocks",
    *,
    layout: str = "seed",
    input_nc: int = 3,
    output_nc: int = 3,
    ngf: int | None = None,
    **options,
) -> nn.Module:
    """Build and initialize a generator.

    ``arch``: resnet_9blocks, resnet_6blocks, resnet (``n_blocks``), unet_256, unet_128, unet
    (``num_downs``), style_transfer. ``layout``: "seed" (affine InstanceNorm, no bias before a norm) or
    "reference" (the reference's exact parameters). ``ngf`` defaults to 64 (32 for style_transfer).
    Options: norm (instance/batch/none), padding_type (reflect/replicate/zero), use_dropout, upsample
    (transpose/resize), n_blocks, num_downs, init_type, init_gain, backend (InstanceNorm backend).
    """
    check_choice("arch", arch, GENERATOR_ARCHS, what="architecture", label="generator arch")
    family, fixed, arch_defaults = _GENERATORS[arch]
    applicable = _FAMILY_OPTIONS[family] | set(_COMMON_DEFAULTS)
    opts = _resolve_options(f"generator arch {arch!r}", options, _GENERATOR_DEFAULTS, applicable)
    for name, value in fixed.items():
        if opts[name] is not None and opts[name] != value:
            raise ValueError(
                f"generator arch {arch!r} has {name}={value}, got {name}={opts[name]}: "
                f"use arch={family!r} with {name}={opts[name]}"
            )
        opts[name] = value
    for name, value in arch_defaults.items():
        opts[name] = value if opts[name] is None else opts[name]
    norm = NormChoice(opts["norm"], layout, opts["backend"])
    ngf = _DEFAULT_NGF[family] if ngf is None else ngf
    if family == "resnet":
        net = ResnetGenerator(
            input_nc,
            output_nc,
            ngf,
            opts["n_blocks"],
            norm=norm,
            padding_type=opts["padding_type"],
            use_dropout=opts["use_dropout"],
            upsample=opts["upsample"],
        )
    elif family == "unet":
        net = UnetGenerator(
            input_nc, output_nc, opts["num_downs"], ngf, norm=norm, use_dropout=opts["use_dropout"]
        )
    else:
        net = StyleTransferNetwork(
            input_nc, output_nc, ngf, opts["n_blocks"], norm=norm, upsample=opts["upsample"]
        )
    net.spec["arch"] = arch
    return init_weights(net, opts["init_type"], opts["init_gain"])


def build_discriminator(
    arch: str = "basic",
    *,
    layout: str = "seed",
    input_nc: int = 3,
    ndf: int = 64,
    n_layers: int = 3,
    **options,
) -> nn.Module:
    """Build and initialize a discriminator: ``basic`` (70x70 PatchGAN, 3 layers), ``n_layers``
    (PatchGAN with ``n_layers``) or ``pixel`` (1x1 PixelGAN). Options: norm, init_type, init_gain, backend.
    """
    check_choice("arch", arch, DISCRIMINATOR_ARCHS, what="architecture", label="discriminator arch")
    opts = _resolve_options(f"discriminator arch {arch!r}", options, _COMMON_DEFAULTS, set(_COMMON_DEFAULTS))
    if arch != "n_layers" and n_layers != 3:
        what = "is the 3-layer PatchGAN" if arch == "basic" else "has no n_layers"
        raise ValueError(
            f"discriminator arch {arch!r} {what}, got n_layers={n_layers}: "
            "use arch='n_layers' for a PatchGAN with another depth"
        )
    norm = NormChoice(opts["norm"], layout, opts["backend"])
    if arch == "pixel":
        net = PixelDiscriminator(input_nc, ndf, norm=norm)
    else:
        net = NLayerDiscriminator(input_nc, ndf, n_layers, norm=norm)
        net.spec["arch"] = arch
    return init_weights(net, opts["init_type"], opts["init_gain"])
