"""LR schedules: per-epoch values stepping the schedulers directly and inside a real Trainer run."""

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from cyclegan.model import CycleGAN, build_scheduler, linear_decay_factor

LR = 2e-4
GEN = {"arch": "resnet", "n_blocks": 1, "ngf": 4}
DISC = {"arch": "basic", "ndf": 4}


def lrs_per_epoch(policy, epochs, metrics=None, **settings):
    """LR in force during each epoch, stepping the scheduler once at every epoch end."""
    settings = {"n_epochs": 3, "n_epochs_decay": 4, "lr_decay_iters": 2, "lr_gamma": 0.5, **settings}
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    scheduler = build_scheduler(optimizer, policy, **settings)
    values = []
    for epoch in range(epochs):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(*([metrics[epoch]] if metrics is not None else []))
    return values


def test_linear_matches_the_reference_formula():
    # Reference: lr_l = 1 - max(0, epoch + epoch_count - n_epochs) / (n_epochs_decay + 1), epoch_count = 1.
    expected = [LR * (1 - max(0, epoch + 1 - 3) / (4 + 1)) for epoch in range(7)]
    assert lrs_per_epoch("linear", 7) == pytest.approx(expected, rel=1e-12)
    # Written out: constant for n_epochs = 3 epochs, then 4/5, 3/5, 2/5, 1/5 of the base rate.
    assert lrs_per_epoch("linear", 7) == pytest.approx([LR, LR, LR, 0.8 * LR, 0.6 * LR, 0.4 * LR, 0.2 * LR])
    assert linear_decay_factor(199, 100, 100) == pytest.approx(1 / 101)


def test_step_multiplies_by_gamma_every_lr_decay_iters_epochs():
    assert lrs_per_epoch("step", 6) == pytest.approx([LR, LR, LR / 2, LR / 2, LR / 4, LR / 4])


def test_cosine_anneals_to_zero_over_all_epochs():
    values = lrs_per_epoch("cosine", 8, n_epochs=2, n_epochs_decay=2)
    expected = [LR * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in range(5)]
    assert values[:5] == pytest.approx(expected, abs=1e-12)
    assert values[4] == pytest.approx(0.0, abs=1e-12)


def test_plateau_cuts_the_rate_after_patience_epochs_without_improvement():
    values = lrs_per_epoch("plateau", 9, metrics=[1.0] * 9)
    # best=1.0 after epoch 0; five bad epochs (1..5) are tolerated, the sixth (6) reduces by 0.2.
    assert values == pytest.approx([LR] * 7 + [0.2 * LR] * 2)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lr_policy": "exponential"}, "lr_policy must be one of"),
        ({"gan_mode": "wgan"}, "gan_mode must be one of"),
        ({"lr_policy": "step", "lr_decay_iters": 0}, "lr_decay_iters"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lambda_A": -1.0}, "lambda_A must be >= 0"),
        ({"gradient_clip_val": 0.0}, "gradient_clip_val"),
        ({"max_consecutive_nonfinite": 0}, "max_consecutive_nonfinite"),
    ],
)
def test_bad_settings_fail_at_construction(settings, message):
    with pytest.raises(ValueError, match=message):
        CycleGAN(GEN, DISC, **settings)


class RecordLR(pl.Callback):
    def __init__(self):
        self.lrs = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.lrs.extend(opt.param_groups[0]["lr"] for opt in trainer.optimizers)


def batches(count, size=32):
    generator = torch.Generator().manual_seed(1)
    data = [
        {
            "A": torch.rand(1, 3, size, size, generator=generator) * 2 - 1,
            "B": torch.rand(1, 3, size, size, generator=generator) * 2 - 1,
        }
        for _ in range(count)
    ]
    return DataLoader(data, batch_size=None)


def fit(model, epochs, callbacks):
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(model, batches(2))
    return trainer


def test_linear_schedule_in_a_trainer_run_steps_once_per_epoch():
    record = RecordLR()
    model = CycleGAN(GEN, DISC, lr_policy="linear", n_epochs=1, n_epochs_decay=2)
    trainer = fit(model, 3, [record])
    # Per epoch: [G lr, D lr].
    assert record.lrs == pytest.approx([LR, LR, LR * 2 / 3, LR * 2 / 3, LR / 3, LR / 3])
    assert trainer.global_step == 2 * 2 * 3  # two optimizer steps per iteration


def test_plateau_in_a_trainer_run_watches_the_epoch_mean_generator_loss():
    model = CycleGAN(GEN, DISC, lr_policy="plateau")
    trainer = fit(model, 1, [])
    epoch_mean = trainer.callback_metrics["train/G_epoch"].item()
    for scheduler in model.lr_schedulers():
        assert scheduler.best == pytest.approx(epoch_mean, rel=1e-5)


class EpochEndReplayed(CycleGAN):
    """Runs its epoch-end hook twice, as Lightning does for an epoch-end checkpoint on some resumes."""

    def on_train_epoch_end(self):
        super().on_train_epoch_end()
        super().on_train_epoch_end()


@pytest.mark.parametrize("policy", ["linear", "plateau"])
def test_a_replayed_epoch_end_steps_the_schedulers_once(policy):
    record = RecordLR()
    model = EpochEndReplayed(GEN, DISC, lr_policy=policy, n_epochs=1, n_epochs_decay=2)
    trainer = fit(model, 3, [record])
    for scheduler in model.lr_schedulers():
        assert scheduler.last_epoch == 3
    if policy == "linear":
        assert record.lrs == pytest.approx([LR, LR, LR * 2 / 3, LR * 2 / 3, LR / 3, LR / 3])
    else:  # the replay's empty sums log nothing: the epoch's mean stays the logged value
        assert model.lr_schedulers()[0].best == pytest.approx(
            trainer.callback_metrics["train/G_epoch"].item()
        )
