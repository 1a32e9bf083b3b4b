"""Exact resume: N iterations + a resume for N more end bitwise equal to 2N straight iterations.

The interrupted runs are the step checkpoints a real run writes (every_n_train_steps) mid-epoch and at
an epoch's end; each resume is a new cyclegan-train invocation in a new run folder. Two DataLoader
workers, deterministic=True, CPU. Compared: every weight, both optimizers' state, the schedulers, the
image pools and RNGs (through the next iterations), the losses logged at every step and the epoch means
(the module keeps its own epoch sums in the checkpoint, so an interrupted epoch's mean covers all of it).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from test_train_cli import TINY, make_unpaired_dataset, run_train
from torch.utils.data import DataLoader

from cyclegan.callbacks import TrainingStateCheckpoint
from cyclegan.model import CycleGAN

# 6 A images, batch 1: 6 iterations (12 optimizer steps) per epoch; 2 epochs
STEPS_PER_EPOCH = 12
TOTAL_STEPS = 24
COMMON = [
    *TINY,
    "data=folder",
    "data.num_workers=2",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=1",
    "trainer.limit_val_batches=0",
    "trainer.max_epochs=2",
    "model.n_epochs=1",  # the linear decay starts after epoch 0, so the schedulers' state matters
    "model.n_epochs_decay=2",
    "model.pool_size=3",
    "callbacks.image_grid.every_n_steps=4",
    "logger=csv",
    "callbacks.model_checkpoint.every_n_train_steps=8",
    "callbacks.model_checkpoint.every_n_epochs=1",
    "callbacks.model_checkpoint.keep_last_k=10",
]


def logged_losses(run: Path) -> dict[int, dict[str, str]]:
    """Per-iteration losses, epoch mean losses and learning rates from metrics.csv, by logged step."""
    rows: dict[int, dict[str, str]] = {}
    with open(run / "csv" / "version_0" / "metrics.csv") as file:
        for row in csv.DictReader(file):
            values = {
                key: value
                for key, value in row.items()
                if value
                and (
                    key.startswith("lr/") or (key.startswith("train/") and key.endswith(("_step", "_epoch")))
                )
            }
            if values:
                rows.setdefault(int(row["step"]), {}).update(values)
    return rows


def assert_same_training_state(a: Path, b: Path) -> None:
    first, second = (torch.load(path, weights_only=True) for path in (a, b))
    assert first["global_step"] == second["global_step"] == TOTAL_STEPS
    assert first["state_dict"].keys() == second["state_dict"].keys()
    for key, tensor in first["state_dict"].items():
        assert torch.equal(tensor, second["state_dict"][key]), key
    for opt_a, opt_b in zip(first["optimizer_states"], second["optimizer_states"], strict=True):
        for param, state in opt_a["state"].items():
            for name, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][param][name])), name
    assert first["lr_schedulers"] == second["lr_schedulers"]
    pools = [ckpt["cyclegan_state"]["processes"][0] for ckpt in (first, second)]
    for name in ("fake_A_pool", "fake_B_pool"):  # CycleGAN's image pools (pix2pix has none)
        for x, y in zip(pools[0].get(name, {}).get("images", []), pools[1].get(name, {}).get("images", [])):
            assert torch.equal(x, y)
    assert torch.equal(pools[0]["rng"], pools[1]["rng"])


def train_straight(root: Path, extra: list[str]) -> tuple[Path, Path]:
    """The uninterrupted run of 12 iterations, with step checkpoints at iterations 4 and 8 and epoch-end
    checkpoints at 6 and 12; returns the dataset and the run folder."""
    dataset = make_unpaired_dataset(root / "data")
    out = root / "straight"
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert run_train([*COMMON, *extra, f"data.root={dataset}", f"hydra.run.dir={out}"], monkeypatch) == 0
    return dataset, out


def assert_resume_is_exact(
    straight_run: tuple[Path, Path],
    checkpoint: str,
    where: str,
    extra: list[str],
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resume the straight run's ``checkpoint`` into ``out`` and compare the two runs' ends and logs."""
    dataset, straight = straight_run
    interrupted = straight / "checkpoints" / checkpoint
    resumed_step = torch.load(interrupted, weights_only=True)["global_step"]
    assert resumed_step < TOTAL_STEPS and (resumed_step % STEPS_PER_EPOCH != 0) == (where == "mid-epoch")

    args = [*COMMON, *extra, f"data.root={dataset}", f"hydra.run.dir={out}", f"ckpt_path={interrupted}"]
    assert run_train(args, monkeypatch) == 0

    assert_same_training_state(straight / "checkpoints" / "last.ckpt", out / "checkpoints" / "last.ckpt")
    # the logged `step` counts iterations (Lightning's batches-that-stepped), half the optimizer steps
    expected = {step: row for step, row in logged_losses(straight).items() if step >= resumed_step // 2}
    got = logged_losses(out)
    assert got.keys() == expected.keys() and len(got) >= 4
    assert got == expected
    # the last epoch's means, and for a mid-epoch resume those of the interrupted epoch, are compared
    epoch_rows = [row for row in got.values() if "train/G_epoch" in row]
    assert len(epoch_rows) == (2 if where == "mid-epoch" else 1)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_straight(tmp_path_factory.mktemp("resume"), [])


@pytest.mark.parametrize(
    ("checkpoint", "where", "extra"),
    [
        ("epoch0000-step00000008.ckpt", "mid-epoch", []),
        ("epoch0000-step00000012.ckpt", "epoch end", []),
        # with max_steps set, Lightning replays the epoch-end hooks of the checkpoint's epoch on resume
        ("epoch0000-step00000012.ckpt", "epoch end", [f"trainer.max_steps={TOTAL_STEPS}"]),
    ],
    ids=["mid-epoch", "epoch-end", "epoch-end-max-steps"],
)
def test_resume_is_bitwise_identical(
    straight_run: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    checkpoint: str,
    where: str,
    extra: list[str],
) -> None:
    assert_resume_is_exact(straight_run, checkpoint, where, extra, tmp_path / "resumed", monkeypatch)


def test_resume_with_dropout_is_bitwise_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropout draws from the global torch RNG, which the default configuration never does: the
    resume is exact only if `TrainingStateCheckpoint` restores it."""
    dropout = ["+model.generator.use_dropout=true"]
    straight_run = train_straight(tmp_path, dropout)
    checkpoint = "epoch0000-step00000008.ckpt"
    assert_resume_is_exact(straight_run, checkpoint, "mid-epoch", dropout, tmp_path / "resumed", monkeypatch)


def global_draws() -> list[float]:
    """One draw from each global RNG, the Gaussian ones too (Python and NumPy cache every second one)."""
    return [
        random.random(),
        random.gauss(0.0, 1.0),
        float(np.random.random()),
        float(np.random.standard_normal()),
        *torch.rand(2).tolist(),
    ]


def test_training_state_restores_every_global_rng(tmp_path: Path) -> None:
    """Round trip through a weights_only file: the draws after the restore repeat those after the save."""
    callback = TrainingStateCheckpoint()
    model = CycleGAN({"arch": "resnet", "n_blocks": 1, "ngf": 4}, {"arch": "basic", "ndf": 4})
    batch = {"A": torch.zeros(1, 3, 32, 32), "B": torch.zeros(1, 3, 32, 32)}
    pl.Trainer(
        accelerator="cpu",
        fast_dev_run=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    ).fit(model, DataLoader([batch], batch_size=None))
    global_draws()  # leaves a cached Gaussian in Python's and NumPy's state
    torch.save(callback.state_dict(), tmp_path / "state.pt")
    expected = global_draws()

    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    callback.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert global_draws() == expected
