"""Reference-weight import: output parity with reference-format networks, round trips, mismatch errors.

The reference-format networks below are written here from the architecture table (plain torch.nn with
torch.nn.InstanceNorm2d, ``use_bias`` only for InstanceNorm, in-place activations as the reference
has them) so our networks are checked against an independent construction.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cyclegan.nn import (
    build_discriminator,
    build_generator,
    infer_reference_spec,
    load_reference_state_dict,
    load_reference_weights,
)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class _Holder(nn.Module):
    def __init__(self, attribute: str, layers: list[nn.Module]) -> None:
        super().__init__()
        self.attribute = attribute
        setattr(self, attribute, nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.attribute)(x)


class _RefResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, padding: str, dropout: bool) -> None:
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = []
        for second in (False, True):
            if padding == "reflect":
                layers.append(nn.ReflectionPad2d(1))
            layers.append(nn.Conv2d(dim, dim, 3, padding=1 if padding == "zero" else 0, bias=bias))
            layers.append(_norm(norm, dim))
            if not second:
                layers.append(nn.ReLU(True))
                if dropout:
                    layers.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def ref_resnet(
    input_nc=3, output_nc=3, ngf=64, n_blocks=9, norm="instance", padding="reflect", dropout=False
):
    bias = norm == "instance"
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), _norm(norm, ngf), nn.ReLU(True)]
    for mult in (1, 2):
        layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=bias), _norm(norm, ngf * mult * 2)]
        layers.append(nn.ReLU(True))
    layers += [_RefResnetBlock(ngf * 4, norm, padding, dropout) for _ in range(n_blocks)]
    for mult in (4, 2):
        layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1, bias=bias)]
        layers += [_norm(norm, ngf * mult // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
    return _Holder("model", layers)


class _RefUnetBlock(nn.Module):
    """One nested U-Net level; ``cat([x, model(x)])`` after the in-place LeakyReLU has rewritten x."""

    def __init__(
        self, outer, inner, input_nc=None, sub=None, outermost=False, norm="instance", dropout=False
    ):
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        input_nc = input_nc or outer
        down = nn.Conv2d(input_nc, inner, 4, 2, 1, bias=bias)
        if outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif sub is None:
            up = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, _norm(norm, outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias)
            layers = [
                nn.LeakyReLU(0.2, True),
                down,
                _norm(norm, inner),
                sub,
                nn.ReLU(True),
                up,
                _norm(norm, outer),
            ]
            layers += [nn.Dropout(0.5)] if dropout else []
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class _RefUnet(nn.Module):
    def __init__(self, input_nc=3, output_nc=3, num_downs=8, ngf=64, norm="instance", dropout=False):
        super().__init__()
        block = _RefUnetBlock(ngf * 8, ngf * 8, norm=norm)
        for _ in range(num_downs - 5):
            block = _RefUnetBlock(ngf * 8, ngf * 8, sub=block, norm=norm, dropout=dropout)
        for mult in (4, 2, 1):
            block = _RefUnetBlock(ngf * mult, ngf * mult * 2, sub=block, norm=norm)
        self.model = _RefUnetBlock(output_nc, ngf, input_nc, block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def ref_patchgan(input_nc=3, ndf=64, n_layers=3, norm="instance"):
    bias = norm == "instance"
    layers = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers + 1):
        previous, mult = mult, min(2**n, 8)
        stride = 2 if n < n_layers else 1
        layers += [nn.Conv2d(ndf * previous, ndf * mult, 4, stride, 1, bias=bias), _norm(norm, ndf * mult)]
        layers.append(nn.LeakyReLU(0.2, True))
    layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
    return _Holder("model", layers)


def ref_pixel(input_nc=3, ndf=64, norm="instance"):
    bias = norm == "instance"
    layers = [nn.Conv2d(input_nc, ndf, 1), nn.LeakyReLU(0.2, True), nn.Conv2d(ndf, ndf * 2, 1, bias=bias)]
    layers += [_norm(norm, ndf * 2), nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * 2, 1, 1, bias=bias)]
    return _Holder("net", layers)


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Weights ~ N(0, 1/fan_in) so activations stay O(1) and tanh does not saturate; nonzero biases
    (the seed layout must cancel them exactly); BatchNorm with random affine and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                w = module.weight
                fan_in = w[0].numel() if isinstance(module, nn.Conv2d) else w.shape[0] * w[0, 0].numel()
                w.copy_(torch.randn(w.shape, generator=gen) / math.sqrt(fan_in))
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.5)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(1 + 0.3 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=gen))
                module.running_mean.copy_(0.3 * torch.randn(module.running_mean.shape, generator=gen))
                module.running_var.copy_(1 + torch.rand(module.running_var.shape, generator=gen))
    return net.eval()


def assert_parity(reference: nn.Module, x: torch.Tensor, layout: str, **options) -> nn.Module:
    ours = load_reference_weights(reference.state_dict(), layout=layout, **options).eval()
    with torch.no_grad():
        expected, got = reference(x.clone()), ours(x.clone())
    assert got.shape == expected.shape
    assert expected.abs().max() > 0.05  # not a degenerate (all-zero / saturated) comparison
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    return ours


LAYOUTS = ["seed", "reference"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_resnet_parity(layout, norm):
    reference = randomize(ref_resnet(ngf=8, n_blocks=3, norm=norm))
    x = torch.randn(2, 3, 32, 48)
    ours = assert_parity(reference, x, layout)
    assert ours.spec["norm"] == norm and ours.spec["n_blocks"] == 3 and ours.spec["layout"] == layout


@pytest.mark.parametrize("layout", LAYOUTS)
def test_resnet_parity_zero_padding_dropout_grayscale(layout):
    reference = randomize(ref_resnet(1, 1, ngf=8, n_blocks=2, padding="zero", dropout=True))
    ours = assert_parity(reference, torch.randn(1, 1, 36, 28), layout)
    assert ours.spec["padding_type"] == "zero" and ours.spec["use_dropout"] is True


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_unet_parity(layout, norm):
    reference = randomize(_RefUnet(num_downs=6, ngf=4, norm=norm))
    ours = assert_parity(reference, torch.randn(2, 3, 64, 64), layout)
    assert ours.spec["num_downs"] == 6 and ours.spec["ngf"] == 4


@pytest.mark.parametrize(
    "make_reference", [lambda: ref_resnet(ngf=8, n_blocks=2), lambda: _RefUnet(num_downs=5, ngf=4)]
)
def test_gradient_parity_reference_layout(make_reference):
    """Backward through the fused activations and residual adds gives the reference's gradients."""
    reference = randomize(make_reference()).train()
    ours = load_reference_weights(reference.state_dict(), layout="reference").train()
    x = torch.randn(2, 3, 32, 32)
    weight = torch.randn(2, 3, 32, 32)
    inputs = []
    for net in (reference, ours):
        xi = x.clone().requires_grad_(True)
        (net(xi) * weight).sum().backward()
        inputs.append(xi.grad)
    torch.testing.assert_close(inputs[1], inputs[0], atol=1e-4, rtol=1e-4)
    theirs = dict(reference.named_parameters())
    for key, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, theirs[key].grad, atol=1e-4, rtol=1e-4, msg=key)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n_layers", [3, 2])
def test_patchgan_parity(layout, n_layers):
    reference = randomize(ref_patchgan(ndf=8, n_layers=n_layers))
    ours = assert_parity(reference, torch.randn(2, 3, 64, 80), layout)
    assert ours.spec["arch"] == ("basic" if n_layers == 3 else "n_layers")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_pixel_parity(layout, norm):
    assert_parity(randomize(ref_pixel(ndf=8, norm=norm)), torch.randn(2, 3, 16, 20), layout)


def test_reference_layout_round_trip_is_identical():
    reference = randomize(ref_resnet(ngf=8, n_blocks=2))
    ours = load_reference_weights(reference.state_dict(), layout="reference")
    theirs, mine = reference.state_dict(), ours.state_dict()
    assert list(mine) == list(theirs)
    for key in theirs:
        assert torch.equal(mine[key], theirs[key]), key


def test_seed_layout_drops_cancelled_biases_and_sets_identity_affine():
    reference = randomize(ref_resnet(ngf=8, n_blocks=1))
    ours = load_reference_weights(reference.state_dict())
    state = ours.state_dict()
    assert "model.1.bias" not in state and "model.18.bias" in state
    assert torch.equal(state["model.2.weight"], torch.ones(8)) and torch.equal(
        state["model.2.bias"], torch.zeros(8)
    )
    # A seed-layout state_dict loads back into the seed layout unchanged.
    again = load_reference_weights(state)
    assert all(torch.equal(again.state_dict()[key], value) for key, value in state.items())


def test_file_old_running_stats_and_dataparallel_prefix(tmp_path):
    reference = randomize(ref_patchgan(ndf=8))
    state = {f"module.{key}": value for key, value in reference.state_dict().items()}
    for index, channels in ((3, 16), (6, 32), (9, 64)):  # what PyTorch 0.4 saved for InstanceNorm
        state[f"module.model.{index}.running_mean"] = torch.zeros(channels)
        state[f"module.model.{index}.running_var"] = torch.ones(channels)
    path = tmp_path / "latest_net_D_A.pth"
    torch.save(state, path)
    ours = load_reference_weights(path, layout="reference").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-4, rtol=0)


def test_infers_full_size_presets():
    cases = [
        (ref_resnet(), {"arch": "resnet_9blocks", "ngf": 64, "n_blocks": 9, "input_nc": 3, "output_nc": 3}),
        (ref_resnet(n_blocks=6), {"arch": "resnet_6blocks", "n_blocks": 6}),
        (_RefUnet(1, 2, num_downs=7), {"arch": "unet_128", "num_downs": 7, "input_nc": 1, "output_nc": 2}),
        (_RefUnet(), {"arch": "unet_256", "num_downs": 8}),
        (ref_patchgan(), {"arch": "basic", "ndf": 64, "n_layers": 3, "role": "discriminator"}),
        (ref_patchgan(n_layers=5), {"arch": "n_layers", "n_layers": 5}),
        (ref_pixel(input_nc=1), {"arch": "pixel", "input_nc": 1}),
    ]
    for net, expected in cases:
        spec = infer_reference_spec(net.state_dict())
        assert {key: spec[key] for key in expected} == expected
        assert spec["norm"] == "instance" and spec["layout"] == "reference"


def _error(net: nn.Module, state_dict: dict) -> str:
    with pytest.raises(ValueError) as info:
        load_reference_state_dict(net, state_dict)
    return str(info.value)


def test_mismatch_errors_name_the_setting():
    nine = build_generator("resnet_9blocks", ngf=8)
    six = ref_resnet(ngf=8, n_blocks=6).state_dict()
    message = _error(nine, six)
    assert "checkpoint has 6 residual blocks, model has 9: set model.generator.arch=resnet_6blocks" in message
    free = build_generator("resnet", n_blocks=9, ngf=8)
    assert "set model.generator.n_blocks=6" in _error(free, six)
    message = _error(build_generator("resnet_9blocks", ngf=16), ref_resnet(ngf=8).state_dict())
    assert "checkpoint has ngf=8, model has ngf=16: set model.generator.ngf=8" in message
    message = _error(build_generator(ngf=8), ref_resnet(1, 3, ngf=8).state_dict())
    assert "checkpoint has 1 input channels, model has 3: set model.generator.input_nc=1" in message
    message = _error(build_generator(ngf=8), _RefUnet(num_downs=7, ngf=8).state_dict())
    assert "U-Net generator (unet_128)" in message and "set model.generator.arch=unet_128" in message
    message = _error(build_generator("unet_256", ngf=4), _RefUnet(num_downs=7, ngf=4).state_dict())
    assert "checkpoint has 7 downsamplings (num_downs), model has 8" in message
    message = _error(build_generator(ngf=8), ref_patchgan(ndf=8).state_dict())
    assert "holds a discriminator (basic) but the model is a generator" in message
    message = _error(build_discriminator(ndf=8), ref_patchgan(ndf=8, n_layers=4).state_dict())
    assert "set model.discriminator.arch=n_layers and model.discriminator.n_layers=4" in message
    message = _error(build_discriminator(ndf=8), ref_patchgan(ndf=8, norm="batch").state_dict())
    assert "checkpoint has norm=batch, model has norm=instance: set model.discriminator.norm=batch" in message


def test_seed_checkpoint_into_reference_layout_is_explained():
    seed_state = randomize(build_generator("resnet", n_blocks=1, ngf=8)).state_dict()
    target = build_generator("resnet", n_blocks=1, ngf=8, layout="reference")
    assert "set model.generator.layout=seed" in _error(target, seed_state)


def test_damaged_state_dict_lists_what_is_missing():
    state = ref_resnet(ngf=8, n_blocks=2).state_dict()
    del state["model.4.weight"]
    state["model.12.weight"] = state["model.12.weight"][:, :4]
    message = _error(build_generator("resnet", n_blocks=2, ngf=8, layout="reference"), state)
    assert "generator (resnet): 1 model entries missing from it (first: ['model.4.weight'])" in message
    assert "model.12.weight: checkpoint (32, 4, 3, 3) vs model (32, 16, 3, 3)" in message


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        load_reference_weights(tmp_path / "missing.pth")
    good = tmp_path / "good.pth"
    torch.save(ref_pixel(ndf=4).state_dict(), good)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(good.read_bytes()[:200])
    with pytest.raises(
        ValueError, match=r"cannot read reference weights .*corrupt\.pth.*corrupt or truncated"
    ):
        load_reference_weights(corrupt)
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(ValueError, match=r"list\.pth holds a list, not a state_dict"):
        load_reference_weights(listing)
    lightning = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"netG_A.model.1.weight": torch.zeros(1)}, "epoch": 3}, lightning)
    with pytest.raises(ValueError, match="training checkpoint"):
        load_reference_weights(lightning)
    with pytest.raises(ValueError, match="not a CycleGAN generator or discriminator"):
        load_reference_weights({"fc.weight": torch.zeros(2, 2)})


@pytest.mark.parametrize(
    ("arch", "options"),
    [
        ("resnet", {"n_blocks": 2, "ngf": 4, "upsample": "resize", "padding_type": "replicate"}),
        ("style_transfer", {"n_blocks": 2, "ngf": 4, "norm": "batch"}),
        ("unet_128", {"ngf": 2, "input_nc": 1}),
    ],
)
def test_our_checkpoints_round_trip_with_overrides(arch, options):
    """Our own state_dicts load back too; settings the keys cannot show (replicate pads) come as options."""
    net = randomize(build_generator(arch, **options))
    extra = {"padding_type": "replicate"} if "padding_type" in options else {}
    again = load_reference_weights(net.state_dict(), **extra).eval()
    assert again.spec == net.spec
    x = torch.randn(1, options.get("input_nc", 3), 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x), atol=1e-5, rtol=0)
