"""CUT and FastCUT through the real commands: ``cyclegan-train model=cut data=sample trainer=cpu`` trains
(tiny networks), logs grids to wandb offline, resumes exactly (N + N iterations end bitwise equal to 2N),
and its checkpoint translates, exports and evaluates AtoB, while BtoA is a one-line error."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from test_inference_support import TinyFeatures, compose_config
from test_resume_exact import logged_losses
from test_train_cli import REPO, TINY, run_train, run_train_subprocess
from test_train_wandb import wait_for_record

from cyclegan.cli.evaluate import run_eval
from cyclegan.cli.export import run_export
from cyclegan.inference import load_generator
from cyclegan.model import MODEL_KEY

# the shipped sample, tiny networks; layers of a 1-block generator: input, downsamplings, the block
CUT_TINY = [*TINY, "data=sample", "model.nce_layers=[0,4,8,10]", "model.num_patches=16"]
TRANSLATE = REPO / ".venv" / "bin" / "cyclegan-translate"


@pytest.fixture(scope="module")
def trained_cut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interface command as a subprocess of the console script: 4 iterations, wandb offline, grids."""
    out = tmp_path_factory.mktemp("cut") / "run"
    args = [
        "model=cut",
        *CUT_TINY,
        "data.max_dataset_size=4",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
        "callbacks.image_grid.every_n_steps=2",
        "logger=wandb",
        f"hydra.run.dir={out}",
    ]
    run = run_train_subprocess(args, env={"WANDB_MODE": "offline"})
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_train_command_checkpoints_and_logs_grids_to_wandb_offline(trained_cut: Path) -> None:
    checkpoint = torch.load(trained_cut / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2 * 4  # a D and a G step per iteration
    assert checkpoint[MODEL_KEY] == {"class": "CUT", "generators": {"AtoB": "netG"}}
    assert sorted(path.name for path in (trained_cut / "images").iterdir()) == [
        "step_000002.png",
        "step_000004.png",
    ]
    (run,) = (trained_cut / "wandb").glob("offline-run-*")
    assert len(list((run / "files" / "media" / "images").rglob("*.png"))) == 2
    log = wait_for_record(run / f"run-{run.name.rsplit('-', 1)[-1]}.wandb", b"train/NCE_Y_step")
    assert b"cyclegan.model.CUT" in log and b"train/NCE_Y_step" in log


def translate(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.run(
        [str(TRANSLATE), *args], capture_output=True, text=True, timeout=240, env=env, cwd=REPO
    )


def test_checkpoint_translates_atob_and_names_the_missing_direction(
    trained_cut: Path, tmp_path: Path
) -> None:
    checkpoint = trained_cut / "checkpoints" / "last.ckpt"
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("Blinds_000.jpg", "GreenMeadow_000.jpg"):
        shutil.copy(REPO / "data" / "sample" / "testA" / name, inputs / name)
    common = [f"checkpoint={checkpoint}", f"input={inputs}"]
    done = translate([*common, f"output={tmp_path / 'out'}", "direction=AtoB"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "Blinds_000.jpg",
        "GreenMeadow_000.jpg",
    ]

    refused = translate([*common, f"output={tmp_path / 'no'}", "direction=BtoA"])
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert str(checkpoint) in line and "CUT" in line and "translates AtoB only" in line
    assert not (tmp_path / "no").exists()


def test_checkpoint_exports_and_evaluates_atob(trained_cut: Path, tmp_path: Path) -> None:
    checkpoint = trained_cut / "checkpoints" / "last.ckpt"
    exported = tmp_path / "cut.pt"
    run_export(
        compose_config("export", [f"checkpoint={checkpoint}", "format=torchscript", f"output={exported}"])
    )
    x = torch.rand(1, 3, 36, 44) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(load_generator(exported)(x), load_generator(checkpoint)(x))

    data = REPO / "data" / "sample"
    cfg = [f"checkpoint={checkpoint}", f"data.root={data}", "max_images=4", "resize=32", "progress=false"]
    output = tmp_path / "metrics.json"
    results = run_eval(compose_config("eval", [*cfg, "direction=AtoB", f"output={output}"]), TinyFeatures())
    assert set(results) == {"AtoB"} and output.is_file()
    from cyclegan.checkpoint_files import CheckpointError

    with pytest.raises(CheckpointError, match=r"CUT.* translates AtoB only"):
        run_export(
            compose_config(
                "export",
                [
                    f"checkpoint={checkpoint}",
                    "format=safetensors",
                    "direction=BtoA",
                    f"output={tmp_path / 'cut_btoa.safetensors'}",
                ],
            )
        )


def same_training_state(a: Path, b: Path) -> None:
    first, second = (torch.load(path, weights_only=True) for path in (a, b))
    assert first["global_step"] == second["global_step"]
    assert first["state_dict"].keys() == second["state_dict"].keys()
    for key, tensor in first["state_dict"].items():
        assert torch.equal(tensor, second["state_dict"][key]), key
    for opt_a, opt_b in zip(first["optimizer_states"], second["optimizer_states"], strict=True):
        for param, state in opt_a["state"].items():
            for name, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][param][name])), name
    assert first["lr_schedulers"] == second["lr_schedulers"]
    rngs = [ckpt["cyclegan_state"]["processes"][0]["rng"] for ckpt in (first, second)]
    assert torch.equal(*rngs)


# FastCUT draws flips and patch positions from the module generator; CUT, patch positions only
@pytest.mark.parametrize("model", [pytest.param("cut", marks=pytest.mark.slow), "fastcut"])
def test_resume_is_bitwise_identical(model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """5 images: 10 iterations over 2 epochs straight, against 4 and a resume (mid-epoch) for 6 more."""
    monkeypatch.chdir(REPO)  # data=sample's root is relative
    common = [
        f"model={model}",
        *CUT_TINY,
        "data.max_dataset_size=5",
        "data.num_workers=0",
        "trainer.deterministic=true",
        "trainer.log_every_n_steps=1",
        "trainer.limit_val_batches=0",
        "trainer.max_epochs=2",
        "model.n_epochs=1",  # the linear decay starts after epoch 0
        "model.n_epochs_decay=2",
        "callbacks.image_grid.every_n_steps=4",
        "logger=csv",
        "callbacks.model_checkpoint.every_n_train_steps=8",
        "callbacks.model_checkpoint.keep_last_k=10",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run_train([*common, f"hydra.run.dir={straight}"], monkeypatch) == 0
    interrupted = straight / "checkpoints" / "epoch0000-step00000008.ckpt"
    assert run_train([*common, f"hydra.run.dir={resumed}", f"ckpt_path={interrupted}"], monkeypatch) == 0

    same_training_state(straight / "checkpoints" / "last.ckpt", resumed / "checkpoints" / "last.ckpt")
    expected = {step: row for step, row in logged_losses(straight).items() if step >= 4}
    got = logged_losses(resumed)
    assert got == expected and len(got) >= 6
    assert any("train/NCE_step" in row for row in got.values())
