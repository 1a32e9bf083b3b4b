"""Checkpoint files: atomic writes, safe loading (weights_only), clear errors for corrupt files, keep-last-K,
and ckpt_path=last."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from test_train_cli import TINY, make_unpaired_dataset, run_train

from cyclegan.checkpoint_files import (
    TEMP_PREFIX,
    CheckpointError,
    find_latest_checkpoint,
    load_checkpoint_file,
    save_atomically,
)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short real run with step checkpoints every 2 iterations and keep_last_k=2."""
    root = tmp_path_factory.mktemp("ckpt")
    dataset = make_unpaired_dataset(root / "data")
    out = root / "run"
    args = [
        *TINY,
        "data=folder",
        f"data.root={dataset}",
        "data.num_workers=0",
        "logger=csv",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=0",
        "callbacks.model_checkpoint.every_n_train_steps=4",
        "callbacks.model_checkpoint.keep_last_k=2",
        f"hydra.run.dir={out}",
    ]
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert run_train(args, monkeypatch) == 0
    return out


def test_checkpoints_load_with_weights_only(trained_run: Path) -> None:
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 12
    assert type(checkpoint["hyper_parameters"]) is dict
    assert type(checkpoint["hyper_parameters"]["generator"]) is dict
    assert type(checkpoint["datamodule_hyper_parameters"]) is dict
    assert {"RunCheckpoint", "TrainingStateCheckpoint"} <= set(checkpoint["callbacks"])
    assert len(checkpoint["optimizer_states"]) == 2 and len(checkpoint["lr_schedulers"]) == 2


def test_keep_last_k_and_last(trained_run: Path) -> None:
    names = sorted(path.name for path in (trained_run / "checkpoints").iterdir())
    # steps 4, 8 and 12 (= the epoch end) were saved; only the newest two survive, plus last.ckpt
    assert names == ["epoch0000-step00000008.ckpt", "epoch0000-step00000012.ckpt", "last.ckpt"]
    assert find_latest_checkpoint(trained_run / "checkpoints") == trained_run / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_error_names_the_file(
    trained_run: Path, tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    broken = tmp_path / "broken.ckpt"
    data = (trained_run / "checkpoints" / "last.ckpt").read_bytes()
    broken.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError, match=str(broken)):
        load_checkpoint_file(broken)
    if damage == "truncate":  # through the CLI: exit status 2 and the file named, no unpickling internals
        dataset = trained_run.parent / "data"
        args = [
            *TINY,
            "data=folder",
            f"data.root={dataset}",
            f"ckpt_path={broken}",
            f"hydra.run.dir={tmp_path}",
        ]
        assert run_train(args, monkeypatch) == 2
        err = capsys.readouterr().err
        assert str(broken) in err and "truncated" in err
        assert "Traceback" not in err


def test_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "objects.ckpt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(CheckpointError, match="safe loading"):
        load_checkpoint_file(path)


def test_atomic_write_leaves_old_file_when_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    save_atomically({"step": torch.tensor(1)}, path)

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(CheckpointError, match=f"cannot write checkpoint {path}: no space left on device"):
        save_atomically({"step": torch.tensor(2)}, path)
    assert load_checkpoint_file(path)["step"] == 1  # the previous checkpoint, intact
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]  # no temp file left


def test_ckpt_path_last_starts_fresh_then_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    dataset = make_unpaired_dataset(tmp_path / "data")
    out = tmp_path / "run"
    args = [
        *TINY,
        "data=folder",
        f"data.root={dataset}",
        "data.num_workers=0",
        "logger=none",
        "trainer.limit_val_batches=0",
        "ckpt_path=last",
        f"hydra.run.dir={out}",
    ]
    assert run_train([*args, "trainer.max_steps=4"], monkeypatch) == 0
    assert "no checkpoint in" in capsys.readouterr().out
    assert run_train([*args, "trainer.max_steps=8"], monkeypatch) == 0
    assert f"resuming from {out / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().out
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8


def test_nonfinite_losses_stop_with_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A diverging run stops on the module's NonFiniteLossError: exit status 3, last good weights saved."""
    dataset = make_unpaired_dataset(tmp_path / "data")
    out = tmp_path / "run"
    args = [
        *TINY,
        "data=folder",
        f"data.root={dataset}",
        "data.num_workers=0",
        "logger=none",
        "trainer.limit_val_batches=0",
        "model.lr=1e30",  # the first Adam step blows the weights up; the next losses are not finite
        "model.max_consecutive_nonfinite=2",
        f"hydra.run.dir={out}",
    ]
    assert run_train(args, monkeypatch) == 3
    assert "training stopped: 2 training iterations in a row had a non-finite loss" in capsys.readouterr().err
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint["state_dict"].values())
