"""Network structure: parameter counts, state_dict key names, output shapes, options, init, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cyclegan.nn import (
    DISCRIMINATOR_ARCHS,
    GENERATOR_ARCHS,
    InstanceNorm2d,
    build_discriminator,
    build_generator,
    init_weights,
)
from cyclegan.nn.layers import ResizeConv2d


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_reference_layout_parameter_counts():
    assert count(build_generator("resnet_9blocks", layout="reference")) == 11_378_179
    assert count(build_generator("resnet_6blocks", layout="reference")) == 7_837_699
    assert count(build_discriminator("basic", layout="reference")) == 2_764_737


def test_seed_layout_swaps_cancelled_biases_for_affine_norms():
    # Each of the 2 + 2 + 2 * n_blocks conv -> InstanceNorm pairs drops C biases and gains 2C affine values.
    norm_channels = 64 + 128 + 256 + 18 * 256 + 128 + 64
    assert count(build_generator("resnet_9blocks")) == 11_378_179 + norm_channels
    assert count(build_discriminator("basic")) == 2_764_737 + 128 + 256 + 512


def test_resnet_reference_keys():
    keys = set(build_generator("resnet_9blocks", layout="reference", ngf=8).state_dict())
    expected = {f"model.{i}.{leaf}" for i in (1, 4, 7, 19, 22, 26) for leaf in ("weight", "bias")}
    expected |= {
        f"model.{b}.conv_block.{c}.{leaf}"
        for b in range(10, 19)
        for c in (1, 5)
        for leaf in ("weight", "bias")
    }
    assert keys == expected
    six = set(build_generator("resnet_6blocks", layout="reference", ngf=8).state_dict())
    assert {"model.15.conv_block.5.bias", "model.16.weight", "model.19.weight", "model.23.bias"} <= six
    assert "model.16.conv_block.1.weight" not in six


def test_resnet_seed_keys_and_fused_layers():
    net = build_generator("resnet_9blocks", ngf=8)
    keys = set(net.state_dict())
    assert "model.1.weight" in keys and "model.1.bias" not in keys and "model.2.weight" in keys
    assert "model.10.conv_block.6.bias" in keys and "model.10.conv_block.5.bias" not in keys
    assert "model.26.bias" in keys  # the last conv feeds tanh, not a norm
    assert isinstance(net.model[2], InstanceNorm2d) and net.model[2].activation == "relu"
    assert isinstance(net.model[3], nn.Identity)
    block = net.model[10]
    assert block.fuse_residual and block.conv_block[6].activation is None


def test_resnet_variants_keep_reference_indices():
    zero = build_generator(
        "resnet", n_blocks=1, ngf=8, padding_type="zero", use_dropout=True, layout="reference"
    )
    assert [type(m).__name__ for m in zero.model[10].conv_block] == [
        "Conv2d",
        "InstanceNorm2d",
        "Identity",
        "Dropout",
        "Conv2d",
        "InstanceNorm2d",
    ]
    replicate = build_generator("resnet", n_blocks=1, ngf=8, padding_type="replicate")
    assert isinstance(replicate.model[10].conv_block[0], nn.ReplicationPad2d)
    resize = build_generator("resnet", n_blocks=1, ngf=8, upsample="resize")
    assert isinstance(resize.model[11], ResizeConv2d) and resize.model[11].weight.shape == (16, 32, 3, 3)
    assert resize(torch.randn(1, 3, 32, 40)).shape == (1, 3, 32, 40)
    batch = build_generator("resnet", n_blocks=1, ngf=8, norm="batch")
    assert isinstance(batch.model[2], nn.BatchNorm2d) and isinstance(batch.model[3], nn.ReLU)
    assert batch.model[1].bias is None


def test_patchgan_and_pixel_keys():
    basic = build_discriminator(layout="reference", ndf=8)
    assert set(basic.state_dict()) == {
        f"model.{i}.{leaf}" for i in (0, 2, 5, 8, 11) for leaf in ("weight", "bias")
    }
    assert isinstance(basic.model[3], InstanceNorm2d) and basic.model[3].activation == "leaky_relu"
    assert basic.model[3].negative_slope == 0.2
    deeper = build_discriminator("n_layers", n_layers=5, ndf=4, layout="reference")
    assert deeper.model[17].weight.shape == (1, 32, 4, 4)  # channels cap at 8 * ndf
    pixel = build_discriminator("pixel", layout="reference", ndf=8)
    assert set(pixel.state_dict()) == {f"net.{i}.{leaf}" for i in (0, 2, 5) for leaf in ("weight", "bias")}
    assert "net.2.bias" not in build_discriminator("pixel", ndf=8).state_dict()


def test_unet_keys_nest_like_the_reference():
    net = build_generator("unet_128", ngf=4, layout="reference")
    keys = set(net.state_dict())
    depth7 = "model.model." + "1.model." + "3.model." * 5  # the innermost of 7 levels
    assert {"model.model.0.weight", "model.model.3.bias", "model.model.1.model.1.weight"} <= keys
    assert {f"{depth7}1.weight", f"{depth7}3.weight"} <= keys
    assert not any(key.startswith(f"{depth7}3.model.") for key in keys)
    assert count(build_generator("unet_256", ngf=4, layout="reference")) > count(net)
    assert isinstance(net.model.model[1].model[0], nn.LeakyReLU)  # after the outermost conv: no norm to fuse
    assert isinstance(net.model.model[1].model[3].model[0], nn.Identity)  # fused into the parent's downnorm


@pytest.mark.parametrize(
    ("arch", "options", "shape", "expected"),
    [
        ("resnet_9blocks", {"ngf": 4}, (1, 3, 64, 96), (1, 3, 64, 96)),
        ("resnet_6blocks", {"ngf": 4, "input_nc": 1, "output_nc": 1}, (2, 1, 128, 128), (2, 1, 128, 128)),
        (
            "resnet",
            {"ngf": 4, "n_blocks": 1},
            (1, 3, 65, 99),
            (1, 3, 68, 100),
        ),  # rounded up to 4, as reference
        ("unet_128", {"ngf": 4, "input_nc": 1, "output_nc": 1}, (2, 1, 128, 128), (2, 1, 128, 128)),
        ("unet", {"ngf": 2, "num_downs": 5}, (1, 3, 64, 96), (1, 3, 64, 96)),
        ("style_transfer", {"ngf": 4}, (1, 3, 64, 96), (1, 3, 64, 96)),
        ("style_transfer", {"ngf": 4, "upsample": "resize", "output_nc": 1}, (2, 3, 36, 20), (2, 1, 36, 20)),
    ],
)
def test_generator_shapes(arch, options, shape, expected):
    out = build_generator(arch, **options)(torch.randn(shape))
    assert out.shape == expected and out.abs().max() <= 1


@pytest.mark.parametrize(
    ("arch", "options", "shape", "expected"),
    [
        ("basic", {"ndf": 4}, (1, 3, 256, 256), (1, 1, 30, 30)),
        ("basic", {"ndf": 4}, (1, 3, 64, 96), (1, 1, 6, 10)),
        ("n_layers", {"ndf": 4, "n_layers": 2, "input_nc": 1}, (2, 1, 128, 128), (2, 1, 30, 30)),
        ("pixel", {"ndf": 4}, (2, 3, 20, 36), (2, 1, 20, 36)),
    ],
)
def test_discriminator_shapes(arch, options, shape, expected):
    assert build_discriminator(arch, **options)(torch.randn(shape)).shape == expected


def test_style_transfer_is_the_seed_network():
    net = build_generator("style_transfer")
    assert net.encoder[0].weight.shape == (32, 3, 9, 9) and net.encoder[0].bias is None
    assert net.encoder[6].weight.shape == (128, 64, 3, 3) and len(net.residual) == 5
    assert isinstance(net.decoder[0], nn.ConvTranspose2d) and net.decoder[6].kernel_size == (9, 9)
    assert isinstance(net.decoder[7], nn.Tanh) and net.encoder[1].affine


def test_unet_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="divisible by 32"):
        build_generator("unet", num_downs=5, ngf=2)(torch.randn(1, 3, 48, 40))


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: build_generator("resnet_12blocks"), r"generator arch must be one of \['resnet_9blocks'"),
        (
            lambda: build_discriminator("multiscale"),
            r"discriminator arch must be one of \['basic', 'n_layers'",
        ),
        (lambda: build_generator(layout="mine"), r"layout must be one of \['seed', 'reference'\]"),
        (lambda: build_generator(norm="group"), r"norm must be one of \['instance', 'batch', 'none'\]"),
        (lambda: build_generator(padding_type="circular"), r"padding_type must be one of"),
        (lambda: build_generator(upsample="bilinear"), r"upsample must be one of \['transpose', 'resize'\]"),
        (lambda: build_generator(init_type="uniform"), r"init_type must be one of \['normal', 'xavier'"),
        (lambda: build_generator(backend="cuda"), r"backend must be one of"),
        (lambda: build_generator(n_block=9), r"unknown option\(s\) \['n_block'\].*valid options: \["),
        (
            lambda: build_generator("resnet_9blocks", n_blocks=6),
            r"has n_blocks=9, got n_blocks=6: use arch='resnet'",
        ),
        (
            lambda: build_generator("unet_256", upsample="resize"),
            r"upsample='resize' does not apply to generator",
        ),
        (lambda: build_generator("unet", num_downs=4), r"num_downs must be an integer >= 5"),
        (lambda: build_generator(ngf=0), r"ngf must be an integer >= 1"),
        (lambda: build_generator(use_dropout="yes"), r"use_dropout must be true or false"),
        (
            lambda: build_discriminator("basic", n_layers=5),
            r"'basic' is the 3-layer PatchGAN.*arch='n_layers'",
        ),
        (lambda: build_discriminator(padding_type="zero"), r"unknown option\(s\) \['padding_type'\]"),
    ],
)
def test_bad_settings_get_clear_errors(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_irrelevant_options_at_their_defaults_are_accepted():
    net = build_generator("unet_128", ngf=2, padding_type="reflect", upsample="transpose", n_blocks=None)
    assert net.spec["arch"] == "unet_128" and net.spec["num_downs"] == 7


def test_spec_rebuilds_the_same_network():
    for arch in GENERATOR_ARCHS:
        net = build_generator(arch, ngf=2, layout="reference")
        assert net.spec["arch"] == arch
        again = build_generator(**net.spec)
        assert {k: v.shape for k, v in again.state_dict().items()} == {
            k: v.shape for k, v in net.state_dict().items()
        }
    for arch in DISCRIMINATOR_ARCHS:
        assert build_discriminator(**build_discriminator(arch, ndf=4).spec).spec["arch"] == arch


def test_init_types():
    torch.manual_seed(0)
    net = build_generator("resnet", n_blocks=1, ngf=16, norm="batch")
    weight = net.model[10].conv_block[1].weight
    assert abs(weight.std().item() - 0.02) < 0.002 and weight.abs().max() > 0
    assert (
        abs(net.model[2].weight.mean().item() - 1) < 0.01 and 0.01 < net.model[2].weight.std().item() < 0.03
    )
    assert torch.count_nonzero(net.model[2].bias) == 0 and torch.count_nonzero(net.model[18].bias) == 0
    seed = build_generator("resnet", n_blocks=1, ngf=16, init_gain=0.1)
    assert 0.05 < seed.model[2].weight.std().item() < 0.15  # affine InstanceNorm: N(1, gain)
    conv = nn.Conv2d(64, 64, 3)
    init_weights(conv, "xavier", gain=1.0)
    assert abs(conv.weight.std().item() - (2 / (9 * 64 + 9 * 64)) ** 0.5) < 0.003
    init_weights(conv, "kaiming")
    assert abs(conv.weight.std().item() - (2 / (9 * 64)) ** 0.5) < 0.005
    init_weights(conv, "orthogonal", gain=0.5)
    flat = conv.weight.reshape(64, -1)
    torch.testing.assert_close(flat @ flat.T, 0.25 * torch.eye(64), atol=1e-4, rtol=0)
