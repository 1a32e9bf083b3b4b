"""The ResNet generator's feature path (CUT's PatchNCE layers): the outputs of ``model[i]`` without a copy
of the network, stopping after the last layer asked for; fused InstanceNorm, channels_last, compile."""

from __future__ import annotations

import pytest
import torch

from cyclegan.nn import build_generator

LAYERS = [0, 4, 8, 12, 16]
GENERATORS = {
    "seed": {"n_blocks": 9, "ngf": 4},
    "reference": {"n_blocks": 6, "ngf": 4, "layout": "reference"},
    "batchnorm_resize_zero": {
        "n_blocks": 2,
        "ngf": 4,
        "norm": "batch",
        "upsample": "resize",
        "padding_type": "zero",
    },
}


def generator(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_generator("resnet", **GENERATORS[name]).eval()


def outputs_by_hooks(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The plain forward's output and every ``model[i]`` output, captured with forward hooks."""
    captured: list[torch.Tensor] = []
    handles = [module.register_forward_hook(lambda _m, _i, out: captured.append(out)) for module in net.model]
    try:
        output = net(x)
    finally:
        for handle in handles:
            handle.remove()
    return output, captured


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_features_are_the_module_outputs_and_the_output_is_unchanged(name):
    net = generator(name)
    x = torch.randn(2, 3, 32, 32)
    layers = [index for index in LAYERS if index < len(net.model)]
    with torch.no_grad():
        expected_output, every_output = outputs_by_hooks(net, x)
        output, features = net(x, layers=layers)
        encoded = net(x, layers=layers, encode_only=True)
    torch.testing.assert_close(output, expected_output, rtol=0, atol=0)
    for index, feature, only in zip(layers, features, encoded, strict=True):
        torch.testing.assert_close(feature, every_output[index], rtol=0, atol=0)
        torch.testing.assert_close(only, feature, rtol=0, atol=0)
    assert [f.shape[1] for f in features] == net.feature_channels(layers)


def test_feature_channels_of_every_index_match_a_forward():
    for name in GENERATORS:
        net = generator(name)
        every = list(range(len(net.model)))
        with torch.no_grad():
            _, outputs = outputs_by_hooks(net, torch.randn(1, 3, 16, 16))
        assert net.feature_channels(every) == [out.shape[1] for out in outputs], name


def test_encode_only_stops_after_the_last_layer_and_keeps_the_order_asked_for():
    net = generator("seed")
    called: list[int] = []
    for index, module in enumerate(net.model):
        module.register_forward_hook(lambda _m, _i, _o, index=index: called.append(index))
    with torch.no_grad():
        features = net(torch.randn(1, 3, 32, 32), layers=[8, 0, 4], encode_only=True)
    assert called == list(range(9))
    assert [f.shape[1] for f in features] == [16, 3, 8]  # ngf 4: 4 * ngf, the padded input, 2 * ngf


@pytest.mark.parametrize("layers", [[], [-1], [28], [0, 1.5]])
def test_bad_layers_are_a_clear_error(layers):
    net = generator("seed")
    with pytest.raises(ValueError, match=r"indices into the generator's 28 modules \(0 to 27\)"):
        net(torch.randn(1, 3, 16, 16), layers=layers)
    with pytest.raises(ValueError, match="feature layers"):
        net.feature_channels(layers)


def test_channels_last_features_match_contiguous():
    net = generator("seed")
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        expected = net(x, layers=LAYERS, encode_only=True)
        net = net.to(memory_format=torch.channels_last)
        got = net(x.contiguous(memory_format=torch.channels_last), layers=LAYERS, encode_only=True)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_compiled_feature_path_matches_eager_forward_and_backward():
    """nn.Module.compile (as the models apply it) without graph breaks, through the fused norms."""
    torch._dynamo.reset()
    eager = generator("seed").train()
    compiled = generator("seed").train()
    compiled.compile(backend="aot_eager", fullgraph=True)
    x = torch.randn(1, 3, 32, 32)
    for net in (eager, compiled):
        output, features = net(x, layers=LAYERS)
        encoded = net(output, layers=LAYERS, encode_only=True)
        (output.sum() + sum(f.square().mean() for f in features + encoded)).backward()
    # Eager CPU norms run ATen's kernel, compiled ones the formula the compiler fuses: fp32 rounding
    # differs, so the tolerance follows each gradient's scale (a wrong gradient is off by its whole size).
    for (key, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        scale = a.grad.abs().max().item()
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5 * max(scale, 1.0), rtol=1e-4, msg=key)
