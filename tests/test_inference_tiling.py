"""Tiled inference equals whole-image inference when InstanceNorm uses whole-image statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_inference_support import compose_config, random_image, reference_generator_file

from cyclegan.cli.translate import run_translate
from cyclegan.inference import load_generator, translate
from cyclegan.inference.padding import reflect_pad
from cyclegan.inference.tiling import plan_tiles, receptive_radius, tiled_forward


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiling") / "latest_net_G.pth"
    reference_generator_file(path, seed=3)
    return load_generator(path)


def test_tiles_partition_the_image_into_cores():
    tiles = plan_tiles(40, 56, core=16, context=8)
    covered = np.zeros((40, 56), dtype=int)
    for tile in tiles:
        covered[tile.cy0 : tile.cy1, tile.cx0 : tile.cx1] += 1
        assert tile.y0 == max(tile.cy0 - 8, 0) and tile.x1 == min(tile.cx1 + 8, 56)
    assert (covered == 1).all()


def test_tiled_equals_whole_image_with_whole_image_statistics(generator):
    image = torch.rand(2, 3, 45, 71) * 2 - 1
    with torch.no_grad():
        whole = generator(image)
    tiled = translate(generator, image, tile_size=24)  # 2 x 3 tiles
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max().item() < 1e-5


def test_context_below_the_receptive_field_or_per_tile_statistics_differ(generator):
    """The checks above can fail: too little context, or per-tile statistics, change the result."""
    net, multiple = generator.generator, generator.multiple
    image = torch.rand(1, 3, 48, 48) * 2 - 1
    with torch.no_grad():
        whole = generator(image)
    radius = receptive_radius(net, 3, multiple)
    exact = tiled_forward(net, image, multiple, 24, context=radius + 1)
    short = tiled_forward(net, image, multiple, 24, context=radius - 2 * multiple)
    assert (exact - whole).abs().max().item() < 1e-5
    assert (short - whole).abs().max().item() > 1e-3
    per_tile = torch.zeros_like(whole)  # naive tiling: every tile normalized with its own statistics
    padded = reflect_pad(image, multiple)
    for tile in plan_tiles(48, 48, 24, radius + 1):
        with torch.no_grad():
            out = net(padded[..., tile.y0 : tile.y1, tile.x0 : tile.x1])
        per_tile[..., tile.cy0 : tile.cy1, tile.cx0 : tile.cx1] = out[
            ..., tile.cy0 - tile.y0 : tile.cy1 - tile.y0, tile.cx0 - tile.x0 : tile.cx1 - tile.x0
        ]
    assert (per_tile - whole).abs().max().item() > 1e-2


def test_cli_tiled_output_matches_untiled(generator, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    random_image(41, 53, "RGB", seed=9).save(source / "big.png")
    checkpoint = tmp_path / "latest_net_G.pth"
    reference_generator_file(checkpoint, seed=3)
    common = [f"checkpoint={checkpoint}", f"input={source}", "progress=false"]
    run_translate(compose_config("translate", [*common, f"output={tmp_path / 'whole'}"]))
    run_translate(compose_config("translate", [*common, f"output={tmp_path / 'tiled'}", "tile_size=24"]))
    with (
        Image.open(tmp_path / "whole" / "big.png") as whole,
        Image.open(tmp_path / "tiled" / "big.png") as tiled,
    ):
        difference = np.abs(np.asarray(whole, dtype=np.int16) - np.asarray(tiled, dtype=np.int16))
    assert difference.max() <= 1  # identical up to 8-bit rounding of ~1e-6 float differences


def test_torchscript_generators_cannot_be_tiled(generator, tmp_path):
    from cyclegan.inference import export_generator, open_generator

    source = tmp_path / "latest_net_G.pth"
    reference_generator_file(source)
    scripted = load_generator(export_generator(open_generator(source), "torchscript", tmp_path / "g.pt"))
    with pytest.raises(ValueError, match="TorchScript and ONNX files cannot be tiled"):
        translate(scripted, torch.zeros(1, 3, 32, 32), tile_size=16)


def test_negative_tile_overlap_is_refused(generator):
    with pytest.raises(ValueError, match="tile_overlap must be 0 or more"):
        translate(generator, torch.zeros(1, 3, 32, 32), tile_size=16, tile_overlap=-1)
