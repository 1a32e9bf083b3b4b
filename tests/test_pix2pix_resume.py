"""Exact resume of pix2pix through cyclegan-train: 2N iterations straight end bitwise equal to N + a resume
for N more, mid-epoch and at an epoch's end. The U-Net's dropout (on, as in the reference) draws from
the global RNG, and its BatchNorm running statistics are part of the weights: both must come back.
Compared: every weight and buffer, both optimizers' state, the schedulers, the module's RNG and the
losses logged at every iteration (epoch means included)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_pix2pix_cli import TINY_PIX2PIX, make_aligned
from test_resume_exact import TOTAL_STEPS, assert_same_training_state, logged_losses
from test_train_cli import run_train

# 6 aligned pairs, batch 1: 6 iterations (12 optimizer steps) per epoch; 2 epochs (TOTAL_STEPS = 24, as
# for the CycleGAN runs of test_resume_exact, whose comparison of the two runs' ends this test uses)
STEPS_PER_EPOCH = 12
# one more downsampling than the other pix2pix tests: a U-Net level with dropout (5 levels have none)
REPLACED = ("trainer.max_epochs", "data.load_size", "data.crop_size", "model.generator.num_downs")
COMMON = [
    *(arg for arg in TINY_PIX2PIX if not arg.startswith(REPLACED)),
    "data.load_size=68",
    "data.crop_size=64",
    "model.generator.num_downs=6",
    "data.num_workers=2",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=1",
    "trainer.limit_val_batches=0",
    "trainer.max_epochs=2",
    "model.n_epochs=1",  # the linear decay starts after epoch 0, so the schedulers' state matters
    "model.n_epochs_decay=2",
    "callbacks.image_grid.every_n_steps=4",
    "callbacks.model_checkpoint.every_n_train_steps=8",
    "callbacks.model_checkpoint.every_n_epochs=1",
    "callbacks.model_checkpoint.keep_last_k=10",
]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pix2pix-resume")
    data = make_aligned(root / "data", count=6)
    out = root / "straight"
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert run_train([*COMMON, f"data.root={data}", f"hydra.run.dir={out}"], monkeypatch) == 0
    return data, out


@pytest.mark.parametrize(
    ("checkpoint", "mid_epoch"),
    [("epoch0000-step00000008.ckpt", True), ("epoch0000-step00000012.ckpt", False)],
    ids=["mid-epoch", "epoch-end"],
)
def test_resume_is_bitwise_identical(straight_run, tmp_path, monkeypatch, checkpoint, mid_epoch):
    data, straight = straight_run
    interrupted = straight / "checkpoints" / checkpoint
    resumed_step = torch.load(interrupted, weights_only=True)["global_step"]
    assert (resumed_step % STEPS_PER_EPOCH != 0) == mid_epoch
    out = tmp_path / "resumed"
    args = [*COMMON, f"data.root={data}", f"hydra.run.dir={out}", f"ckpt_path={interrupted}"]
    assert run_train(args, monkeypatch) == 0

    ends = (straight / "checkpoints" / "last.ckpt", out / "checkpoints" / "last.ckpt")
    assert_same_training_state(*ends)
    saved = torch.load(ends[1], weights_only=True)
    assert any(key.endswith("running_mean") for key in saved["state_dict"])  # BatchNorm statistics compared
    assert saved["hyper_parameters"]["generator"]["use_dropout"] is True
    # the logged `step` counts iterations, half the optimizer steps
    expected = {step: row for step, row in logged_losses(straight).items() if step >= resumed_step // 2}
    got = logged_losses(out)
    assert got.keys() == expected.keys() and len(got) >= 4
    assert got == expected
    assert all("train/G_L1_step" in row for step, row in got.items() if step < TOTAL_STEPS // 2)
