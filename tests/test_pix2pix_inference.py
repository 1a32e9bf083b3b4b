"""Inference details of BatchNorm (pix2pix) generators and of the checkpoints' generator mapping: the two
BatchNorm modes, exact tiled inference in ``image`` mode, networks without BatchNorm left alone, and a
malformed mapping refused."""

from __future__ import annotations

import pytest
import torch
from test_inference_support import trained_run

from cyclegan.checkpoint_files import CheckpointError
from cyclegan.inference import open_generator
from cyclegan.inference.tiling import tiled_forward
from cyclegan.nn import ImageStatisticsBatchNorm2d, batchnorm_mode, build_generator, set_batchnorm_mode


def batchnorm_generator() -> torch.nn.Module:
    """A small ResNet generator with BatchNorm and running statistics that differ from any image's."""
    torch.manual_seed(0)
    net = build_generator("resnet", n_blocks=1, ngf=4, norm="batch")
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    return net.eval()


def test_image_mode_normalizes_each_image_alone_and_running_mode_uses_the_statistics():
    net = batchnorm_generator()
    images = torch.rand(3, 3, 24, 24) * 2 - 1
    with torch.no_grad():
        running = net(images)
        with batchnorm_mode(net, "image"):
            per_image = net(images)
            alone = net(images[2:])
        torch.testing.assert_close(net(images), running)  # plain BatchNorm2d again afterwards
    torch.testing.assert_close(alone, per_image[2:], atol=1e-6, rtol=0)
    assert (per_image - running).abs().max() > 0.01
    # what BatchNorm computes in training mode on a batch of one image
    net.train()
    with torch.no_grad():
        expected = torch.cat([net(image[None]) for image in images])
    torch.testing.assert_close(per_image, expected, atol=1e-5, rtol=0)


def test_tiled_inference_in_image_mode_equals_the_whole_image():
    """Each image's statistics are gathered over the whole image across the tiles, as for InstanceNorm."""
    net = set_batchnorm_mode(batchnorm_generator(), "image")
    assert any(isinstance(module, ImageStatisticsBatchNorm2d) for module in net.modules())
    image = torch.rand(1, 3, 96, 80) * 2 - 1
    with torch.no_grad():
        whole = net(image)
    tiled = tiled_forward(net, image, 4, 32)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_networks_without_batchnorm_have_no_mode(tmp_path_factory):
    loaded = open_generator(trained_run(tmp_path_factory)["checkpoint"], batchnorm="running")
    assert loaded.batchnorm is None


def test_a_malformed_generator_mapping_is_refused(tmp_path_factory, tmp_path):
    checkpoint = torch.load(trained_run(tmp_path_factory)["checkpoint"], weights_only=True)
    for mapping in (["netG_A"], {"sideways": "netG_A"}):
        checkpoint["cyclegan_model"] = {"class": "CycleGAN", "generators": mapping}
        path = tmp_path / "bad.ckpt"
        torch.save(checkpoint, path)
        with pytest.raises(CheckpointError, match=r"bad\.ckpt: its cyclegan_model generators are not a dict"):
            open_generator(path)
