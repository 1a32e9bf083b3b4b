"""The published pix2pix generators (``latest_net_G.pth``: unet_256 with BatchNorm and dropout) load with
their architecture inferred and their running statistics kept, and run like the reference network in
both BatchNorm modes: ``running`` (its test.py --eval) and ``image`` (its default test mode, train-mode
BatchNorm on a batch of one, dropout aside). The reference-format network is the independent torch.nn
construction of tests/test_nn_reference_import.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_nn_reference_import import _RefUnet, randomize
from torch import nn

from cyclegan.checkpoint_files import CheckpointError
from cyclegan.inference import export_generator, open_generator
from cyclegan.inference.export import verify_onnx
from cyclegan.nn import ImageStatisticsBatchNorm2d, infer_reference_spec, load_reference_weights


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    """A reference-format unet_256 (ngf 4 to stay small) with BatchNorm, dropout and random running
    statistics, saved as the reference's scripts name it."""
    torch.manual_seed(0)
    reference = randomize(_RefUnet(num_downs=8, ngf=4, norm="batch", dropout=True), seed=3)
    path = tmp_path_factory.mktemp("facades_label2photo_pretrained") / "latest_net_G.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


def _reference_per_image(reference: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The reference's default test mode (train mode: batch statistics) on each image alone, dropout off."""
    reference.train()
    for module in reference.modules():
        if isinstance(module, nn.Dropout):
            module.eval()
    running = {name: buffer.clone() for name, buffer in reference.named_buffers()}
    try:
        with torch.no_grad():
            return torch.cat([reference(image[None]) for image in images])
    finally:  # train-mode BatchNorm updated the running statistics: put them back
        reference.load_state_dict({**reference.state_dict(), **running})
        reference.eval()


def test_the_architecture_is_inferred_and_running_statistics_are_kept(published):
    reference, path = published
    spec = infer_reference_spec(torch.load(path, weights_only=True))
    assert (spec["arch"], spec["norm"], spec["num_downs"], spec["ngf"]) == ("unet_256", "batch", 8, 4)
    ours = load_reference_weights(path)
    theirs = reference.state_dict()
    ours_stats = {k: v for k, v in ours.state_dict().items() if k.endswith(("running_mean", "running_var"))}
    assert len(ours_stats) == sum(k.endswith(("running_mean", "running_var")) for k in theirs) > 0
    for key, value in ours_stats.items():
        assert torch.equal(value, theirs[key]), key


def test_running_mode_matches_the_reference_in_eval_mode(published):
    reference, path = published
    images = torch.rand(2, 3, 256, 256) * 2 - 1
    generator = open_generator(path, batchnorm="running")
    assert generator.batchnorm == "running" and generator.config["arch"] == "unet_256"
    with torch.no_grad():
        expected = reference.eval()(images)
        got = generator.module(images)
    assert expected.abs().max() > 0.05
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_image_mode_matches_the_reference_default_test_mode_per_image(published):
    """Default: each image normalized by its own statistics, whatever else is in the batch."""
    reference, path = published
    images = torch.rand(3, 3, 256, 256) * 2 - 1
    generator = open_generator(path)
    assert generator.batchnorm == "image"
    assert any(isinstance(m, ImageStatisticsBatchNorm2d) for m in generator.module.modules())
    with torch.no_grad():
        batched = generator.module(images)
        alone = generator.module(images[1:2])
    expected = _reference_per_image(reference, images)
    torch.testing.assert_close(batched, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(alone, batched[1:2], atol=1e-5, rtol=0)  # the batch does not matter
    with torch.no_grad():
        running = open_generator(path, batchnorm="running").module(images)
    assert (running - batched).abs().max() > 0.01  # the two modes do differ on this network


def test_non_square_and_odd_sizes_pad_and_crop_back(published):
    _, path = published
    generator = open_generator(path).module
    image = torch.rand(1, 3, 200, 300) * 2 - 1
    with torch.no_grad():
        assert generator(image).shape == (1, 3, 200, 300)


def test_the_other_direction_and_a_bad_mode_are_one_line_errors(published):
    _, path = published
    with pytest.raises(CheckpointError, match="holds one generator, used as AtoB"):
        open_generator(path, "BtoA")
    with pytest.raises(ValueError, match=r"batchnorm must be one of \['image', 'running'\], got 'eval'"):
        open_generator(path, batchnorm="eval")


def test_a_published_unet_256_exports_to_onnx_and_verifies_on_small_images(published, tmp_path):
    """unet_256 pads every side to a multiple of 256 by reflection, which needs sides over 128 pixels:
    the export's check grows its test images to fit."""
    _, path = published
    loaded = open_generator(path)
    output = export_generator(loaded, "onnx", tmp_path / "label2photo.onnx")
    assert verify_onnx(loaded.module, output) < 1e-4
    exported = open_generator(output)
    assert exported.batchnorm == "image" and exported.config["arch"] == "unet_256"
