"""The InstanceNorm1d/2d/3d layers: drop-in for torch.nn.InstanceNorm*d, fused activation and residual."""

import pytest
import torch
from torch import nn

from cyclegan.nn import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d


def test_defaults_match_torch_instance_norm_2d():
    layer = InstanceNorm2d(8)
    assert layer.weight is None and layer.bias is None and layer.eps == 1e-5
    assert layer.activation is None and layer.backend == "auto"
    assert list(layer.parameters()) == []
    x = torch.randn(2, 8, 5, 6)
    torch.testing.assert_close(layer(x), nn.InstanceNorm2d(8)(x))


def test_affine_parameters_start_at_one_and_zero_with_torch_names():
    layer = InstanceNorm2d(4, affine=True)
    assert torch.equal(layer.weight, torch.ones(4)) and torch.equal(layer.bias, torch.zeros(4))
    assert (
        set(layer.state_dict()) == set(nn.InstanceNorm2d(4, affine=True).state_dict()) == {"weight", "bias"}
    )


@pytest.mark.parametrize(
    "ours,theirs,shape",
    [
        (InstanceNorm1d, nn.InstanceNorm1d, (2, 4, 19)),
        (InstanceNorm2d, nn.InstanceNorm2d, (2, 4, 5, 7)),
        (InstanceNorm3d, nn.InstanceNorm3d, (2, 4, 3, 4, 5)),
    ],
    ids=["1d", "2d", "3d"],
)
@pytest.mark.parametrize("backend", ["auto", "torch", "triton"])
def test_matches_torch_layers_forward_and_backward(ours, theirs, shape, backend):
    torch.manual_seed(0)
    layer = ours(4, affine=True, backend=backend)
    reference = theirs(4, affine=True)
    with torch.no_grad():
        for module in (layer, reference):
            module.weight.copy_(torch.linspace(0.5, 1.5, 4))
            module.bias.copy_(torch.linspace(-1, 1, 4))
    x = torch.randn(shape)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = layer(x_ours)
    y_ref = reference(x_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=2e-5)
    grad = torch.randn(shape)
    y.backward(grad)
    y_ref.backward(grad)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_fused_activation_and_residual(backend):
    layer = InstanceNorm2d(3, activation="leaky_relu", negative_slope=0.1, backend=backend)
    x, r = torch.randn(2, 3, 4, 6), torch.randn(2, 3, 4, 6)
    expected = nn.functional.leaky_relu(nn.InstanceNorm2d(3)(x), 0.1) + r
    torch.testing.assert_close(layer(x, residual=r), expected, rtol=1e-5, atol=2e-5)
    relu = InstanceNorm2d(3, activation="relu", backend=backend)
    torch.testing.assert_close(relu(x), torch.relu(nn.InstanceNorm2d(3)(x)), rtol=1e-5, atol=2e-5)


def test_loading_a_state_dict_with_running_stats_ignores_them():
    source = nn.InstanceNorm2d(4, affine=True, track_running_stats=True)
    with torch.no_grad():
        source.weight.fill_(2.0)
        source.running_mean.fill_(5.0)
    state = {f"norm.{k}": v for k, v in source.state_dict().items()}
    assert {"norm.running_mean", "norm.running_var", "norm.num_batches_tracked"} <= set(state)
    model = nn.Sequential()
    model.add_module("norm", InstanceNorm2d(4, affine=True))
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.norm.weight, torch.full((4,), 2.0))
    assert not hasattr(model.norm, "running_mean")
    assert set(state) >= {"norm.running_mean"}, "the caller's dict must keep its keys"


def test_non_affine_layer_loads_running_stats_only_state_dict():
    source = nn.InstanceNorm2d(4, track_running_stats=True)
    layer = InstanceNorm2d(4)
    layer.load_state_dict(source.state_dict(), strict=True)


def test_wrong_input_is_a_clear_error():
    layer = InstanceNorm2d(3)
    with pytest.raises(ValueError, match="InstanceNorm2d expects input of rank 4"):
        layer(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"InstanceNorm2d\(3\) got input with 4 channels"):
        layer(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match="InstanceNorm3d expects input of rank 5"):
        InstanceNorm3d(3)(torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match="activation must be one of"):
        InstanceNorm2d(3, activation="tanh")
    with pytest.raises(ValueError, match="backend must be one of"):
        InstanceNorm2d(3, backend="cudnn")


def test_extra_repr_names_the_options():
    text = repr(InstanceNorm2d(8, affine=True, activation="leaky_relu", backend="triton"))
    expected = "8, eps=1e-05, affine=True, activation='leaky_relu', negative_slope=0.2, backend='triton'"
    assert text == f"InstanceNorm2d({expected})"


def test_channels_last_input_gives_channels_last_output():
    layer = InstanceNorm2d(6, affine=True, activation="relu", backend="triton")
    x = torch.randn(2, 6, 5, 5).contiguous(memory_format=torch.channels_last)
    y = layer(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, torch.relu(nn.InstanceNorm2d(6)(x)), rtol=1e-5, atol=2e-5)
