"""Bad config values fail at start, before anything is built, with a message naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_conf_compose import compose_train
from test_train_cli import TINY, make_unpaired_dataset, run_train

from cyclegan.callbacks import RunFolderError, check_run_folder
from cyclegan.cli.train_config import ConfigError, build_checked


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_unpaired_dataset(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.load_size=32", "data.crop_size=64"], "data.crop_size=64 is larger than data.load_size=32"),
        (["model.gan_mode=hinge_loss"], "model.gan_mode=hinge_loss: unknown loss"),
        (["model.lr_policy=exponential"], "model.lr_policy=exponential: unknown schedule"),
        (["model.generator.arch=transformer"], "model.generator.arch=transformer: unknown architecture"),
        (["model.discriminator.arch=huge"], "model.discriminator.arch=huge: unknown architecture"),
        (["+model.generator.dropout_rate=0.5"], "model.generator: unknown option(s) ['dropout_rate']"),
        (["data.preprocess=zoom"], "data.preprocess=zoom: unknown"),
        (["data.crop_size=30", "data.load_size=36"], "needs image sizes that are multiples of 4"),
        (["model=unet", "data.crop_size=128", "data.load_size=143"], "multiples of 256"),
        (["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path=/nonexistent/last.ckpt: no such checkpoint file"),
    ],
)
def test_bad_values_are_named(dataset: Path, tmp_path: Path, overrides: list[str], message: str) -> None:
    cfg = compose_train(["data=folder", f"data.root={dataset}", *overrides], tmp_path)
    with pytest.raises(ConfigError) as error:
        build_checked(cfg)
    assert message in str(error.value)


def test_missing_dataset_folder(tmp_path: Path) -> None:
    (tmp_path / "data" / "trainA").mkdir(parents=True)
    cfg = compose_train(["data=folder", f"data.root={tmp_path / 'data'}"], tmp_path / "run")
    with pytest.raises(ConfigError, match=r"missing dataset folder .*trainB"):
        build_checked(cfg)
    cfg = compose_train(["data=horse2zebra", f"paths.data_dir={tmp_path / 'nowhere'}"], tmp_path / "run")
    with pytest.raises(ConfigError, match="cyclegan-download"):
        build_checked(cfg)


def test_cli_fails_before_training_with_exit_status_2(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    args = [
        *TINY,
        "data=folder",
        f"data.root={dataset}",
        "model.gan_mode=nope",
        "logger=csv",
        f"hydra.run.dir={out}",
    ]
    assert run_train(args, monkeypatch) == 2
    assert "model.gan_mode=nope: unknown loss" in capsys.readouterr().err
    assert not (out / "checkpoints").exists() and not (out / "csv").exists()


def test_unwritable_or_full_run_folder_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(RunFolderError, match="not writable"):
        check_run_folder(blocker / "run", min_free_mb=1)
    with pytest.raises(RunFolderError, match="MB free, less than min_free_disk_mb"):
        check_run_folder(tmp_path / "run", min_free_mb=1e12)
    check_run_folder(tmp_path / "run", min_free_mb=1)
    assert list((tmp_path / "run").iterdir()) == []  # the write probe is gone


def test_cli_reports_full_disk(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    args = [
        *TINY,
        "data=folder",
        f"data.root={dataset}",
        "min_free_disk_mb=1e12",
        f"hydra.run.dir={tmp_path}",
    ]
    assert run_train(args, monkeypatch) == 2
    assert "min_free_disk_mb" in capsys.readouterr().err


def test_missing_data_root_is_one_line_naming_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = compose_train(["data=folder", "data.root=no/such/dir"], tmp_path / "run")
    with pytest.raises(ConfigError) as error:
        build_checked(cfg)
    (line,) = [text for text in str(error.value).splitlines() if "data.root" in text]
    assert f"no such folder, relative to the working directory {tmp_path}" in line
    assert "cyclegan-download" in line


@pytest.mark.parametrize("kind", ["garbage", "truncated", "weights_only"])
def test_ckpt_path_that_cannot_resume_is_named_before_training(
    dataset: Path, tmp_path: Path, kind: str
) -> None:
    """Corrupt files and weights-only files (reference .pth, exports) fail with a ConfigError, not deep
    inside Lightning's checkpoint loader."""
    import torch

    from cyclegan.cli.resume import check_resume_compatible

    path = tmp_path / f"{kind}.ckpt"
    if kind == "garbage":
        path.write_bytes(b"not a checkpoint at all" * 8)
    elif kind == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:2000])
    else:
        torch.save({"model.1.weight": torch.zeros(4, 3, 7, 7)}, path)
    cfg = compose_train(["data=folder", f"data.root={dataset}", f"ckpt_path={path}"], tmp_path / "run")
    message = "not a training checkpoint" if kind == "weights_only" else "not a checkpoint written by"
    with pytest.raises(ConfigError, match=f"ckpt_path={path}: {message}"):
        check_resume_compatible(str(path), cfg)


def test_fresh_start_over_an_earlier_run_is_warned_about(tmp_path: Path) -> None:
    """Re-running a command into a used run folder without ckpt_path replaces its last.ckpt: say so."""
    from cyclegan.cli.resume import earlier_run_warning

    checkpoints = tmp_path / "run" / "checkpoints"
    assert earlier_run_warning(None, str(checkpoints)) is None
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"x")
    warning = earlier_run_warning(None, str(checkpoints))
    assert warning is not None and "last.ckpt is from an earlier run" in warning
    assert "ckpt_path=last" in warning
    assert earlier_run_warning("last", str(checkpoints)) is None


def test_a_required_setting_left_out_is_named(tmp_path: Path) -> None:
    cfg = compose_train(["data=folder"], tmp_path / "run")
    with pytest.raises(ConfigError, match=r"data\.root: required, pass data\.root=\.\.\."):
        build_checked(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.lambda_A=abc"], "model.lambda_A=abc must be a finite number >= 0"),
        (["model.lr=-0.1"], "model.lr=-0.1 must be > 0"),
        (["model.generator.ngf=abc"], "model.generator.ngf=abc must be an integer >= 1"),
        (["model.discriminator.ndf=0"], "model.discriminator.ndf=0 must be an integer >= 1"),
        (["data.batch_size=two"], "data.batch_size=two must be an integer >= 1"),
        (["data.direction=sideways"], "data.direction=sideways: unknown direction, choose one of AtoB, BtoA"),
        (["trainer.max_epochs=abc"], "trainer.max_epochs=abc: expected an integer or null"),
        (["trainer.precision=64-ish"], "trainer.precision=64-ish: expected one of"),
    ],
)
def test_wrong_types_and_values_name_their_key(
    dataset: Path, tmp_path: Path, overrides: list[str], message: str
) -> None:
    """Every value is checked where its object is built (or against the signature of a class we do not
    own), and the error names the full config key."""
    cfg = compose_train(["data=folder", f"data.root={dataset}", *overrides], tmp_path)
    with pytest.raises(ConfigError) as error:
        build_checked(cfg)
    assert message in str(error.value)


@pytest.mark.parametrize("override", ["model.lr=-0.1", "model.lambda_A=abc", "trainer.max_epochs=abc"])
def test_a_bad_value_or_type_exits_2_with_one_line(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, override: str
) -> None:
    args = [*TINY, "data=folder", f"data.root={dataset}", override, "logger=csv", f"hydra.run.dir={tmp_path}"]
    assert run_train(args, monkeypatch) == 2
    err = capsys.readouterr().err
    assert override.split("=")[0] in err and "Traceback" not in err
