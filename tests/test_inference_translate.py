"""Translating with every checkpoint kind: our Lightning checkpoint, reference .pth, exports; the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_inference_support import (
    compose_config,
    random_image,
    reference_generator_file,
    run_padded,
    trained_run,
)

from cyclegan.checkpoint_files import CheckpointError
from cyclegan.cli.translate import run_translate
from cyclegan.inference import export_generator, load_generator, open_generator, translate
from cyclegan.inference.images import pil_to_network
from cyclegan.nn import build_discriminator, build_generator


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture
def input_tree(tmp_path) -> Path:
    """Odd sizes, grayscale, RGBA, a sub-folder and two undecodable files."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    random_image(37, 53, "RGB", seed=1).save(root / "odd.png")
    random_image(29, 41, "L", seed=2).save(root / "sub" / "gray.jpg")
    random_image(33, 21, "RGBA", seed=3).save(root / "sub" / "alpha.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "sub" / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("not an image, not counted")
    return root


def _generator_from_lightning(checkpoint: Path, direction: str) -> torch.nn.Module:
    """Rebuild G_A or G_B from the raw checkpoint dict, independently of cyclegan.inference."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    config = dict(state["hyper_parameters"]["generator"])
    prefix = "netG_A." if direction == "AtoB" else "netG_B."
    if direction == "BtoA":
        config["input_nc"], config["output_nc"] = config["output_nc"], config["input_nc"]
    net = build_generator(**config)
    net.load_state_dict({k[len(prefix) :]: v for k, v in state["state_dict"].items() if k.startswith(prefix)})
    return net.eval()


def _as_network_tensor(path: Path, channels: int = 3) -> torch.Tensor:
    with Image.open(path) as image:
        return pil_to_network(image, channels).tensor


def test_lightning_checkpoint_both_directions_keep_names_modes_and_skip_bad_files(
    trained, input_tree, tmp_path
):
    out = tmp_path / "out"
    cfg = compose_config(
        "translate",
        [
            f"checkpoint={trained['checkpoint']}",
            f"input={input_tree}",
            f"output={out}",
            "direction=both",
            "batch_size=2",
            "progress=false",
        ],
    )
    reports = run_translate(cfg)
    for direction in ("AtoB", "BtoA"):
        report = reports[direction]
        assert sorted(p.relative_to(out / direction).as_posix() for p in report.written) == [
            "odd.png",
            "sub/alpha.png",
            "sub/gray.jpg",
        ]
        assert sorted(p.name for p, _ in report.skipped) == ["broken.png", "empty.jpg"]
        assert "2" in report.summary().splitlines()[0]
        expected_net = _generator_from_lightning(trained["checkpoint"], direction)
        written = out / direction / "odd.png"
        with Image.open(written) as result:
            assert result.size == (53, 37) and result.mode == "RGB"
            got = np.asarray(result, dtype=np.int16)
        expected = run_padded(expected_net, _as_network_tensor(input_tree / "odd.png")[None])[0]
        expected = ((expected.clamp(-1, 1) + 1) * 127.5).round().to(torch.int16).permute(1, 2, 0).numpy()
        assert np.abs(got - expected).max() <= 1  # 8-bit rounding of float differences at most
        with (
            Image.open(out / direction / "sub" / "alpha.png") as result,
            Image.open(input_tree / "sub/alpha.png") as src,
        ):
            assert result.mode == "RGBA" and result.size == src.size
            assert np.array_equal(np.asarray(result.getchannel("A")), np.asarray(src.getchannel("A")))
        with Image.open(out / direction / "sub" / "gray.jpg") as result:
            assert result.size == (41, 29) and result.mode == "RGB"  # 3-channel network: gray became RGB
    with Image.open(out / "AtoB" / "odd.png") as a, Image.open(out / "BtoA" / "odd.png") as b:
        assert not np.array_equal(np.asarray(a), np.asarray(b))  # G_A and G_B are different networks


def test_reference_pth_architecture_inferred_and_tensor_pil_api(tmp_path):
    path = tmp_path / "latest_net_G.pth"
    reference_net = reference_generator_file(path)
    generator = load_generator(path)
    assert not generator.training
    image = torch.rand(2, 3, 37, 53) * 2 - 1
    expected = run_padded(reference_net, image)
    assert torch.allclose(translate(generator, image), expected, atol=1e-5, rtol=0)
    single = translate(path, image[0], device="cpu")  # a path works too; (C, H, W) in, (C, H, W) out
    assert single.shape == (3, 37, 53) and torch.allclose(single, expected[0], atol=1e-5, rtol=0)
    pil = random_image(37, 53, "RGBA", seed=5)
    result = translate(generator, pil)
    assert isinstance(result, Image.Image) and result.mode == "RGBA" and result.size == pil.size
    results = translate(generator, [pil.convert("L"), pil.convert("RGB")])
    assert [r.mode for r in results] == ["RGB", "RGB"]
    with pytest.raises(CheckpointError, match="holds one generator"):
        load_generator(path, "BtoA")


def test_reference_training_folder_pairs_g_a_and_g_b(tmp_path):
    net_a = reference_generator_file(tmp_path / "latest_net_G_A.pth", seed=1)
    net_b = reference_generator_file(tmp_path / "latest_net_G_B.pth", seed=2)
    image = torch.rand(1, 3, 24, 28) * 2 - 1
    for direction, net in (("AtoB", net_a), ("BtoA", net_b)):
        loaded = open_generator(tmp_path / "latest_net_G_A.pth", direction)
        assert torch.allclose(loaded.module(image), run_padded(net, image), atol=1e-5, rtol=0)
    (tmp_path / "latest_net_G_B.pth").unlink()
    with pytest.raises(CheckpointError, match=r"latest_net_G_B\.pth"):
        open_generator(tmp_path / "latest_net_G_A.pth", "BtoA")


def test_grayscale_network_converts_rgb_input(tmp_path):
    path = tmp_path / "gray_net_G.pth"
    net = reference_generator_file(path, input_nc=1, output_nc=1)
    rgb = random_image(30, 22, "RGB", seed=7)
    result = translate(load_generator(path), rgb)
    assert result.mode == "L" and result.size == rgb.size
    expected = run_padded(net, pil_to_network(rgb.convert("L"), 1).tensor[None])[0, 0]
    expected = ((expected.clamp(-1, 1) + 1) * 127.5).round().numpy()
    assert np.abs(np.asarray(result, dtype=np.float64) - expected).max() <= 1


@pytest.mark.parametrize("fmt", ["torchscript", "safetensors"])
def test_exported_files_translate_like_their_source(trained, tmp_path, fmt):
    source = open_generator(trained["checkpoint"], "BtoA")
    exported = export_generator(source, fmt, tmp_path / f"g_BtoA.{fmt}")
    image = torch.rand(2, 3, 37, 53) * 2 - 1
    assert torch.allclose(
        translate(load_generator(exported, "BtoA"), image), translate(source.module, image), atol=1e-6, rtol=0
    )
    with pytest.raises(CheckpointError, match="holds the BtoA generator only"):
        load_generator(exported, "AtoB")


def test_refuses_to_overwrite_inputs(input_tree):
    checkpoint = input_tree.parent / "net_G.pth"
    reference_generator_file(checkpoint)
    cfg = compose_config(
        "translate",
        [f"checkpoint={checkpoint}", f"input={input_tree}", f"output={input_tree}", "progress=false"],
    )
    before = {p: p.stat().st_mtime_ns for p in input_tree.rglob("*")}
    with pytest.raises(ValueError, match="refusing to overwrite input files"):
        run_translate(cfg)
    assert {p: p.stat().st_mtime_ns for p in input_tree.rglob("*")} == before
    # Same folder but another extension: nothing is overwritten, so it is allowed.
    cfg.output_ext = "webp"
    assert len(run_translate(cfg)["AtoB"].written) == 3


def test_clear_errors_for_missing_corrupt_and_foreign_checkpoints(tmp_path, trained):
    with pytest.raises(CheckpointError, match=r"not found.*missing\.ckpt"):
        load_generator(tmp_path / "missing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(Path(trained["checkpoint"]).read_bytes()[:3000])
    with pytest.raises(CheckpointError, match=r"truncated\.ckpt"):
        load_generator(truncated)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is no checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=r"garbage\.pth"):
        load_generator(garbage)
    foreign = tmp_path / "foreign.pth"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, foreign)
    with pytest.raises(CheckpointError, match="neither a Lightning checkpoint"):
        load_generator(foreign)
    discriminator = tmp_path / "latest_net_D_A.pth"
    torch.save(build_discriminator(ndf=4, layout="reference").state_dict(), discriminator)
    with pytest.raises(CheckpointError, match="discriminator, not a generator"):
        load_generator(discriminator)
    with pytest.raises(ValueError, match="direction must be one of"):
        load_generator(trained["checkpoint"], "sideways")


def test_console_script_runs_through_hydra(tmp_path, trained):
    """The real `cyclegan-translate` entry point: Hydra overrides, output extension, exit codes."""
    source = tmp_path / "in"
    source.mkdir()
    random_image(20, 30, "RGB").save(source / "x.jpg")
    script = Path(sys.executable).with_name("cyclegan-translate")
    run = subprocess.run(
        [
            str(script),
            f"checkpoint={trained['checkpoint']}",
            f"input={source}/*.jpg",
            f"output={tmp_path / 'o'}",
            "direction=BtoA",
            "output_ext=png",
            "progress=false",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    assert "BtoA: translated 1 image(s), skipped 0" in run.stdout
    assert f"output folder: {(tmp_path / 'o').resolve()}" in run.stdout
    with Image.open(tmp_path / "o" / "x.png") as image:
        assert image.size == (30, 20)


def test_console_entry_point_reports_a_missing_checkpoint(tmp_path, monkeypatch, capsys):
    """The Hydra ``main`` in-process: a clear message on stderr and exit status 2."""
    from cyclegan.cli import translate as cli

    monkeypatch.setattr(
        sys,
        "argv",
        ["cyclegan-translate", f"checkpoint={tmp_path / 'nope.ckpt'}", f"input={tmp_path}", "output=o"],
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "checkpoint file not found" in error and "nope.ckpt" in error


def test_sixteen_bit_grayscale_keeps_its_precision(tmp_path):
    path = tmp_path / "latest_net_G.pth"
    net = reference_generator_file(path)
    values = np.linspace(0, 65535, 24 * 32).reshape(24, 32).astype(np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I")
    result = translate(load_generator(path), image)
    assert result.mode == "RGB" and result.size == (32, 24)
    gray = torch.from_numpy(values.astype(np.float32) / 65535.0) * 2 - 1
    expected = run_padded(net, gray.expand(1, 3, -1, -1))[0]
    expected = ((expected.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert np.abs(np.asarray(result, dtype=np.float64) - expected).max() <= 1


def test_importing_inference_leaves_the_training_stack_alone():
    code = (
        "import sys, cyclegan.inference\n"
        "prefixes = ('cyclegan.model', 'cyclegan.cli', 'cyclegan.callbacks', 'pytorch_lightning', 'hydra')\n"
        "heavy = [m for m in sys.modules if m.startswith(prefixes)]\n"
        "print(heavy)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_optional_resize_sets_the_shorter_side(input_tree, tmp_path):
    checkpoint = tmp_path / "latest_net_G.pth"
    reference_generator_file(checkpoint)
    cfg = compose_config(
        "translate",
        [
            f"checkpoint={checkpoint}",
            f"input={input_tree}/odd.png",
            f"output={tmp_path / 'o'}",
            "resize=16",
            "progress=false",
        ],
    )
    run_translate(cfg)
    with Image.open(tmp_path / "o" / "odd.png") as image:
        assert image.size == (23, 16)  # 53 x 37 scaled by 16 / 37


def test_directions_follow_the_dataset_folders_when_trained_with_btoa(trained, tmp_path):
    """With data.direction=BtoA the model's G_A maps folder B to folder A: AtoB must use G_B."""
    state = torch.load(trained["checkpoint"], map_location="cpu", weights_only=True)
    state["datamodule_hyper_parameters"]["direction"] = "BtoA"
    swapped = tmp_path / "btoa.ckpt"
    torch.save(state, swapped)
    image = torch.rand(1, 3, 28, 28) * 2 - 1
    for folder_direction, model_direction in (("AtoB", "BtoA"), ("BtoA", "AtoB")):
        expected = run_padded(_generator_from_lightning(trained["checkpoint"], model_direction), image)
        got = load_generator(swapped, folder_direction)(image)
        assert torch.allclose(got, expected, atol=1e-6, rtol=0)


def test_both_directions_from_a_one_generator_file_fail_before_writing(input_tree, tmp_path):
    """A file holding only AtoB must not translate AtoB and then fail on BtoA."""
    checkpoint = tmp_path / "horse2zebra.pth"
    reference_generator_file(checkpoint)
    out = tmp_path / "out"
    cfg = compose_config(
        "translate",
        [
            f"checkpoint={checkpoint}",
            f"input={input_tree}",
            f"output={out}",
            "direction=both",
            "progress=false",
        ],
    )
    with pytest.raises(CheckpointError, match="holds one generator"):
        run_translate(cfg)
    assert not out.exists()


def test_images_too_small_for_the_network_are_skipped_not_fatal(tmp_path):
    checkpoint = tmp_path / "latest_net_G.pth"
    reference_generator_file(checkpoint)
    source = tmp_path / "in"
    source.mkdir()
    random_image(2, 2, "RGB", seed=1).save(source / "dot.png")
    random_image(20, 24, "RGB", seed=2).save(source / "fine.png")
    common = [f"checkpoint={checkpoint}", f"input={source}", f"output={tmp_path / 'o'}", "progress=false"]
    report = run_translate(compose_config("translate", common))["AtoB"]
    assert report.written == [tmp_path / "o" / "fine.png"]
    ((path, reason),) = report.skipped
    assert path == source / "dot.png" and "cannot translate a 2x2 image" in reason
    with pytest.raises(ValueError, match="resize must be a positive number"):
        run_translate(compose_config("translate", [*common, "resize=0"]))


def test_two_inputs_mapping_to_one_output_file_are_refused(tmp_path):
    """x.jpg and x.png with output_ext=png would silently overwrite one another."""
    checkpoint = tmp_path / "latest_net_G.pth"
    reference_generator_file(checkpoint)
    source = tmp_path / "in"
    source.mkdir()
    random_image(20, 24, "RGB", seed=1).save(source / "x.jpg")
    random_image(20, 24, "RGB", seed=2).save(source / "x.png")
    common = [f"checkpoint={checkpoint}", f"input={source}", f"output={tmp_path / 'o'}", "progress=false"]
    with pytest.raises(ValueError, match=r"x\.jpg and .*x\.png would both be written to .*x\.png"):
        run_translate(compose_config("translate", [*common, "output_ext=png"]))
    assert not (tmp_path / "o").exists()
    assert len(run_translate(compose_config("translate", common))["AtoB"].written) == 2


def test_required_settings_left_out_are_named_not_a_traceback():
    from cyclegan.cli.evaluate import run_eval
    from cyclegan.cli.export import run_export

    with pytest.raises(ValueError, match=r"missing required settings checkpoint, input, output: pass"):
        run_translate(compose_config("translate", []))
    with pytest.raises(ValueError, match=r"missing required settings format, output"):
        run_export(compose_config("export", ["checkpoint=x.ckpt"]))
    with pytest.raises(ValueError, match=r"missing required settings checkpoint, data\.root"):
        run_eval(compose_config("eval", []))
