"""Hostile and unlucky files around cyclegan-export and the model loaders: exporting over the checkpoint
(by name, symlink or hard link), over a folder or an existing file, and checkpoints or exports whose
metadata declares an absurd or malformed network. Real files, real Hydra, the real Hydra entry point."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from safetensors.torch import save_file

from cyclegan.checkpoint_files import CheckpointError
from cyclegan.cli.export import run_export
from cyclegan.inference import load_generator
from cyclegan.inference.checkpoints import METADATA_KEY
from cyclegan.nn import build_generator

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
TINY = {"arch": "resnet", "n_blocks": 1, "ngf": 4, "input_nc": 3, "output_nc": 3}


def reference_generator_file(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(build_generator(**TINY, layout="reference").state_dict(), path)
    return path


def export_config(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="export", overrides=overrides)


def lightning_like_checkpoint(path: Path, generator: dict) -> Path:
    """What cyclegan-train writes, as far as the loader reads it: G_A's weights and its settings."""
    weights = build_generator(**TINY).state_dict()
    torch.save(
        {
            "state_dict": {f"netG_A.{key}": value for key, value in weights.items()},
            "hyper_parameters": {"generator": generator},
        },
        path,
    )
    return path


# ---------------------------------------------------------------------------------- export outputs
@pytest.mark.parametrize("how", ["same name", "symlink", "hard link"])
def test_export_never_replaces_its_own_checkpoint(tmp_path, how):
    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    before = checkpoint.read_bytes()
    output = {"same name": checkpoint, "symlink": tmp_path / "out.pth", "hard link": tmp_path / "out.pth"}[
        how
    ]
    if how == "symlink":
        output.symlink_to(checkpoint)
    elif how == "hard link":
        os.link(checkpoint, output)
    overrides = [f"checkpoint={checkpoint}", "format=safetensors", f"output={output}", "overwrite=true"]
    with pytest.raises(ValueError, match=r"is the checkpoint being exported .*latest_net_G\.pth"):
        run_export(export_config(overrides))
    assert checkpoint.read_bytes() == before
    load_generator(checkpoint)  # still the training file


def test_export_replaces_another_existing_file_only_with_overwrite(tmp_path):
    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    output = tmp_path / "g.safetensors"
    output.write_bytes(b"someone's earlier export")
    overrides = [f"checkpoint={checkpoint}", "format=safetensors", f"output={output}"]
    with pytest.raises(ValueError, match=r"g\.safetensors exists; pass overwrite=true to replace it"):
        run_export(export_config(overrides))
    assert output.read_bytes() == b"someone's earlier export"
    run_export(export_config([*overrides, "overwrite=true"]))
    image = torch.rand(1, 3, 20, 24) * 2 - 1
    assert torch.equal(load_generator(output)(image), load_generator(checkpoint)(image))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["g.safetensors", "latest_net_G.pth"]


def test_export_to_a_folder_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from cyclegan.cli import export as cli

    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    (tmp_path / "exports").mkdir()
    argv = ["cyclegan-export", f"checkpoint={checkpoint}", "format=onnx", f"output={tmp_path / 'exports'}"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("cyclegan-export: error: output=") and "is a folder; name the file" in error
    assert len(error.splitlines()) == 1 and list((tmp_path / "exports").iterdir()) == []


# ------------------------------------------------------------------------------ declared networks
def test_an_absurd_network_in_a_checkpoint_is_refused_naming_the_file_never_allocated(tmp_path):
    """ngf=200000 asks for about 70 TB of weights: refused from the metadata, before any allocation."""
    path = lightning_like_checkpoint(tmp_path / "absurd.ckpt", {**TINY, "ngf": 200_000})
    with pytest.raises(CheckpointError, match=r"absurd\.ckpt: .* parameters .* over the limit"):
        load_generator(path)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({**TINY, "ngf": "abc"}, "generator setting ngf must be an integer, got 'abc'"),
        ({**TINY, "ngf": True}, "generator setting ngf must be an integer"),
        ({**TINY, "n_blocks": -3}, "generator setting n_blocks must be positive"),
        ({**TINY, "n_blocks": 10**7}, "n_blocks=10000000 is over the limit"),
        ({k: v for k, v in TINY.items() if k != "input_nc"}, "generator settings lack input_nc"),
        ({**TINY, "arch": "transformer"}, "generator settings are not valid"),
        ({**TINY, "colour": "blue"}, "generator settings are not valid .*unknown option"),
        ([1, 2, 3], "hyper_parameters has no 'generator' settings dict"),
    ],
)
def test_malformed_generator_settings_in_a_checkpoint_are_named(tmp_path, settings, message):
    path = lightning_like_checkpoint(tmp_path / "odd.ckpt", settings)
    with pytest.raises(CheckpointError, match=rf"odd\.ckpt: .*{message}"):
        load_generator(path)


def safetensors_export(path: Path, metadata: dict) -> Path:
    weights = {key: value.contiguous() for key, value in build_generator(**TINY).state_dict().items()}
    save_file(weights, str(path), metadata={METADATA_KEY: json.dumps(metadata)})
    return path


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"generator": TINY}, r"metadata must name a direction \['AtoB', 'BtoA'\], got None"),
        ({"direction": "sideways", "generator": TINY}, "must name a direction .*got 'sideways'"),
        ({"direction": "AtoB"}, "its generator settings are not a dict"),
        ({"direction": "AtoB", "generator": {**TINY, "ngf": 200_000}}, "parameters .* over the limit"),
    ],
)
def test_malformed_safetensors_metadata_is_named_not_a_key_error(tmp_path, metadata, message):
    path = safetensors_export(tmp_path / "g.safetensors", metadata)
    with pytest.raises(CheckpointError, match=rf"g\.safetensors.*{message}"):
        load_generator(path)
    assert load_generator(
        safetensors_export(tmp_path / "ok.safetensors", {"direction": "AtoB", "generator": TINY})
    )
