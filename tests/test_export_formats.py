"""Export to ONNX (checked in onnxruntime with dynamic shapes), TorchScript and safetensors."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from safetensors import safe_open
from test_inference_support import compose_config, reference_generator_file, trained_run

from cyclegan.checkpoint_files import CheckpointError
from cyclegan.cli.export import run_export
from cyclegan.inference import export_generator, load_generator, open_generator
from cyclegan.inference.checkpoints import METADATA_KEY


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory)


def _onnx_matches_pytorch(path, module, shapes) -> float:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for shape in shapes:
        image = torch.rand(*shape) * 2 - 1
        (result,) = session.run(["translated"], {"image": image.numpy()})
        assert result.shape == (*shape[:1], module.output_nc, *shape[2:])
        with torch.no_grad():
            worst = max(worst, float(np.abs(result - module(image).numpy()).max()))
    return worst


def test_onnx_from_a_lightning_checkpoint_runs_in_onnxruntime_with_dynamic_shapes(trained, tmp_path):
    cfg = compose_config(
        "export",
        [
            f"checkpoint={trained['checkpoint']}",
            "format=onnx",
            f"output={tmp_path / 'g.onnx'}",
            "direction=BtoA",
        ],
    )
    result = run_export(cfg)
    assert result["onnxruntime_max_abs_diff"] < 1e-4
    model = onnx.load(str(tmp_path / "g.onnx"))
    (graph_input,) = model.graph.input
    assert graph_input.name == "image" and [o.name for o in model.graph.output] == ["translated"]
    dims = graph_input.type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]  # batch, height, width dynamic
    metadata = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert metadata["direction"] == "BtoA" and metadata["generator"]["ngf"] == 4
    module = load_generator(trained["checkpoint"], "BtoA")
    assert _onnx_matches_pytorch(tmp_path / "g.onnx", module, [(1, 3, 32, 48), (3, 3, 37, 53)]) < 1e-4


def test_onnx_from_reference_weights(tmp_path):
    source = tmp_path / "latest_net_G.pth"
    reference_generator_file(source, input_nc=1, output_nc=3)
    path = export_generator(open_generator(source), "onnx", tmp_path / "ref.onnx")
    assert _onnx_matches_pytorch(path, load_generator(source), [(2, 1, 40, 24), (1, 1, 21, 66)]) < 1e-4


def test_safetensors_carries_the_architecture(trained, tmp_path):
    path = export_generator(
        open_generator(trained["checkpoint"], "AtoB"), "safetensors", tmp_path / "g.safetensors"
    )
    with safe_open(str(path), framework="pt") as file:
        metadata = json.loads(file.metadata()[METADATA_KEY])
        keys = set(file.keys())
    assert metadata["direction"] == "AtoB" and metadata["generator"]["arch"] == "resnet"
    assert metadata["size_multiple"] == 4 and "model.1.weight" in keys
    image = torch.rand(1, 3, 30, 30) * 2 - 1
    with torch.no_grad():
        assert torch.equal(load_generator(path)(image), load_generator(trained["checkpoint"])(image))


def test_unknown_format_and_bad_direction_are_named(trained, tmp_path):
    base = [f"checkpoint={trained['checkpoint']}", f"output={tmp_path / 'x'}"]
    with pytest.raises(ValueError, match=r"unknown export format 'tflite'.*onnx"):
        run_export(compose_config("export", [*base, "format=tflite"]))
    with pytest.raises(ValueError, match="direction must be one of"):
        run_export(compose_config("export", [*base, "format=onnx", "direction=both"]))
    assert not (tmp_path / "x").exists()


def test_safetensors_file_gets_the_usual_permissions(tmp_path):
    source = tmp_path / "latest_net_G.pth"
    reference_generator_file(source)
    umask = os.umask(0o022)
    try:
        path = export_generator(open_generator(source), "safetensors", tmp_path / "g.safetensors")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by others, as torch.save files are


def test_an_onnx_export_loads_back_by_content_and_runs_in_onnxruntime(tmp_path):
    source = tmp_path / "latest_net_G.pth"
    reference_generator_file(source)
    path = export_generator(open_generator(source), "onnx", tmp_path / "model.bin")  # content, not name
    output_dims = onnx.load(str(path)).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in output_dims] == ["batch", 3, "height", "width"]
    loaded = open_generator(path)
    assert loaded.kind == "onnx" and loaded.direction == "AtoB"
    image = torch.rand(2, 3, 37, 53) * 2 - 1
    with torch.no_grad():
        assert (loaded.module(image) - load_generator(source)(image)).abs().max() < 1e-4
    with pytest.raises(CheckpointError, match="holds the AtoB generator only"):
        load_generator(path, "BtoA")
