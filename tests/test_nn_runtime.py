"""The networks at run time on CPU: backward, channels_last, autocast, torch.compile, ONNX export."""

from __future__ import annotations

import pytest
import torch
from torch.export import Dim

from cyclegan.nn import build_discriminator, build_generator

SMALL_NETS = {
    "resnet": lambda: build_generator("resnet", n_blocks=2, ngf=4),
    "resnet_resize_batchnorm": lambda: build_generator(
        "resnet", n_blocks=1, ngf=4, upsample="resize", norm="batch"
    ),
    "unet": lambda: build_generator("unet", num_downs=5, ngf=2, use_dropout=True),
    "style_transfer": lambda: build_generator("style_transfer", ngf=4),
    "basic": lambda: build_discriminator(ndf=4),
    "pixel": lambda: build_discriminator("pixel", ndf=4, norm="none"),
}


def small(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return SMALL_NETS[name]()


@pytest.mark.parametrize("name", sorted(SMALL_NETS))
def test_forward_backward_reaches_every_parameter(name):
    net = small(name).train()
    out = net(torch.randn(2, 3, 64, 64))
    (out * torch.randn_like(out)).sum().backward()
    for key, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), key
        assert param.grad.abs().max() > 0, key


@pytest.mark.parametrize("name", sorted(SMALL_NETS))
def test_channels_last_matches_contiguous(name):
    net = small(name).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = net(x)
        net = net.to(memory_format=torch.channels_last)
        got = net(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["resnet", "unet", "style_transfer", "basic"])
def test_autocast_cpu(name, dtype):
    net = small(name).train()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = net(x)
    with torch.autocast("cpu", dtype=dtype):
        out = net(x)
    assert out.dtype == dtype and torch.isfinite(out).all()
    scale = expected.abs().max()
    assert (out.float() - expected).abs().max() < 0.05 * scale + 0.02
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("name", ["resnet", "unet", "basic"])
def test_compile_fullgraph_matches_eager(name):
    """No graph breaks (fullgraph) and the same numbers, forward and backward; aot_eager keeps it quick."""
    torch._dynamo.reset()
    net = small(name).eval()
    x = torch.randn(1, 3, 32, 32)
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), net(x), atol=1e-6, rtol=1e-6)
    compiled(x).sum().backward()


@pytest.mark.slow
def test_compile_inductor_resnet():
    """Inductor end to end (C++ codegen on CPU: ~30 s, hence slow), forward and backward."""
    torch._dynamo.reset()
    net = small("resnet")
    x = torch.randn(1, 3, 32, 32)
    compiled = torch.compile(net, fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, net(x), atol=1e-5, rtol=1e-5)
    out.sum().backward()
    grads = {key: p.grad.clone() for key, p in net.named_parameters()}
    net.zero_grad()
    net(x).sum().backward()
    for key, p in net.named_parameters():
        torch.testing.assert_close(grads[key], p.grad, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize(
    ("name", "dims", "shapes"),
    [
        ("resnet_resize", (Dim("h"), Dim("w")), [(1, 3, 36, 52), (3, 3, 64, 40)]),
        ("unet", (32 * Dim("h"), 32 * Dim("w")), [(1, 3, 32, 64), (3, 3, 96, 32)]),
    ],
)
def test_onnx_export_dynamic_shapes(tmp_path, name, dims, shapes):
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    if name == "unet":
        net = build_generator("unet", num_downs=5, ngf=2)
    else:
        net = build_generator("resnet", n_blocks=1, ngf=4, upsample="resize")
    net.eval()
    path = tmp_path / f"{name}.onnx"
    dynamic = {"x": {0: Dim("batch"), 2: dims[0], 3: dims[1]}}
    torch.onnx.export(
        net, (torch.randn(2, 3, 64, 64),), path, input_names=["image"], dynamic_shapes=dynamic, dynamo=True
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in shapes:
        x = torch.randn(shape)
        got = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
        with torch.no_grad():
            torch.testing.assert_close(got, net(x), atol=1e-4, rtol=0)


def test_triton_backend_matches_torch_backend():
    """On the Triton kernels (interpreted on CPU) the networks give the PyTorch path's results."""
    torch.manual_seed(0)
    nets = [build_generator("resnet", n_blocks=1, ngf=4, backend=backend) for backend in ("torch", "triton")]
    nets[1].load_state_dict(nets[0].state_dict())
    x = torch.randn(1, 3, 32, 32)
    outs = [net(x) for net in nets]
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    for out in outs:
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    for (key, theirs), ours in zip(nets[0].named_parameters(), nets[1].parameters()):
        scale = theirs.grad.abs().max().item()
        torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-4 * scale, rtol=1e-3, msg=key)
