"""The training step's arithmetic in real one-iteration Trainer runs: each loss term's weight, the
discriminator loss's 0.5, the generator's adversarial target, and which side a non-finite loss skips.

Exact loss values come from `MeanCritic`, a discriminator whose output is known in closed form; the
behaviour tests use the real networks.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from cyclegan.model import CycleGAN

GEN = {"arch": "resnet", "n_blocks": 1, "ngf": 4, "init_type": "normal", "init_gain": 0.02}
DISC = {"arch": "basic", "ndf": 4}
GENERATOR_TERMS = {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "G"}


def tiny_model(**settings: Any) -> CycleGAN:
    return CycleGAN(GEN, DISC, **{"pool_size": 0, **settings})


def fixed_batch(size: int = 32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {name: torch.rand(2, 3, size, size, generator=generator) * 2 - 1 for name in ("A", "B")}


class Visuals(pl.Callback):
    """Keeps the images the training step returns (``fake_B`` is what D_A judged: the pool is off)."""

    def __init__(self) -> None:
        self.images: dict[str, torch.Tensor] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images = outputs["visuals"]


def one_iteration(model: CycleGAN, batch: dict[str, torch.Tensor]) -> tuple[pl.Trainer, Visuals]:
    """Train ``model`` for one iteration (a generator and a discriminator step) on ``batch``."""
    visuals = Visuals()
    run = pl.Trainer(
        accelerator="cpu",
        fast_dev_run=2,  # 2 optimizer steps; every iteration's losses reach callback_metrics
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[visuals],
    )
    run.fit(model, DataLoader([batch], batch_size=None))
    return run, visuals


def logged(run: pl.Trainer, name: str) -> float:
    return run.callback_metrics[f"train/{name}_step"].item()


# ---------------------------------------------------------------------------- loss weights
def test_cycle_and_identity_losses_carry_the_weight_of_their_target_domain():
    """idt_A = |G_A(B) - B| is a domain-B loss, weighted lambda_B * lambda_identity; lambda_A != lambda_B
    tells the weights apart."""
    model = tiny_model(lambda_A=1.0, lambda_B=7.0, lambda_identity=0.5)
    before = copy.deepcopy(model)
    batch = fixed_batch()
    run, _ = one_iteration(model, batch)

    real_A, real_B = batch["A"], batch["B"]
    G_A, G_B = before.netG_A, before.netG_B
    with torch.no_grad():
        expected = {
            "cycle_A": F.l1_loss(G_B(G_A(real_A)), real_A).item() * 1.0,
            "cycle_B": F.l1_loss(G_A(G_B(real_B)), real_B).item() * 7.0,
            "idt_A": F.l1_loss(G_A(real_B), real_B).item() * 7.0 * 0.5,
            "idt_B": F.l1_loss(G_B(real_A), real_A).item() * 1.0 * 0.5,
        }
    for name, value in expected.items():
        assert logged(run, name) == pytest.approx(value, rel=1e-5), name


# ------------------------------------------------------------------- adversarial terms
class MeanCritic(nn.Module):
    """A discriminator whose 2x2 output map holds ``weight * mean(image) + bias`` for each image: its
    scores are known exactly, and so is its input gradient (the WGAN-GP penalty's)."""

    def __init__(self, weight: float = 0.5, bias: float = 0.25) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight))
        self.bias = nn.Parameter(torch.tensor(bias))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        score = self.weight * images.mean(dim=(1, 2, 3)) + self.bias
        return score.view(-1, 1, 1, 1).expand(-1, 1, 2, 2)

    def scores(self, images: torch.Tensor) -> list[float]:
        """Each image's score, in float64."""
        means = images.double().mean(dim=(1, 2, 3)).tolist()
        return [self.weight.item() * mean + self.bias.item() for mean in means]

    def penalty(self, images: torch.Tensor) -> float:
        """The WGAN-GP penalty: d(sum of the 4 outputs)/dx = 4 * weight / numel in every element."""
        numel = images[0].numel()
        return (4 * abs(self.weight.item()) / math.sqrt(numel) - 1) ** 2


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# Per-image loss of a score s: the discriminator's on a real and on a fake image, the generator's on a fake.
ADVERSARIAL = {
    "lsgan": {"real": lambda s: (s - 1) ** 2, "fake": lambda s: s**2, "generator": lambda s: (s - 1) ** 2},
    "vanilla": {"real": lambda s: softplus(-s), "fake": softplus, "generator": lambda s: softplus(-s)},
    "hinge": {
        "real": lambda s: max(0.0, 1 - s),
        "fake": lambda s: max(0.0, 1 + s),
        "generator": lambda s: -s,
    },
    "wgangp": {"real": lambda s: -s, "fake": lambda s: s, "generator": lambda s: -s},
}


def mean_of(loss, scores: list[float]) -> float:
    return sum(loss(score) for score in scores) / len(scores)


@pytest.fixture(scope="module", params=sorted(ADVERSARIAL))
def critic_iteration(request: pytest.FixtureRequest) -> dict[str, Any]:
    """One iteration with both discriminators replaced by `MeanCritic`s (different ones, so a swap of
    D_A and D_B shows); the pool is off, so each discriminator judged the iteration's own fakes."""
    model = tiny_model(gan_mode=request.param, lambda_identity=0.0)
    model.netD_A = MeanCritic(weight=0.5, bias=0.25)
    model.netD_B = MeanCritic(weight=-0.75, bias=0.5)
    critics = {"D_A": copy.deepcopy(model.netD_A), "D_B": copy.deepcopy(model.netD_B)}
    batch = fixed_batch()
    run, visuals = one_iteration(model, batch)
    return {"mode": request.param, "run": run, "critics": critics, "batch": batch, "images": visuals.images}


# which critic judges which real and which fake images, and the generator term each gives
SIDES = {"D_A": ("B", "fake_B", "G_A"), "D_B": ("A", "fake_A", "G_B")}


@pytest.mark.parametrize("side", sorted(SIDES))
def test_discriminator_loss_is_half_its_real_plus_fake_loss(critic_iteration, side):
    mode, critic = critic_iteration["mode"], critic_iteration["critics"][side]
    real_name, fake_name, _ = SIDES[side]
    real, fake = critic_iteration["batch"][real_name], critic_iteration["images"][fake_name]
    loss = ADVERSARIAL[mode]
    expected = 0.5 * (mean_of(loss["real"], critic.scores(real)) + mean_of(loss["fake"], critic.scores(fake)))
    if mode == "wgangp":
        expected += 10.0 * critic.penalty(real)  # wgangp_lambda's default
    assert logged(critic_iteration["run"], side) == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("side", sorted(SIDES))
def test_generator_adversarial_loss_targets_real(critic_iteration, side):
    mode, critic = critic_iteration["mode"], critic_iteration["critics"][side]
    _, fake_name, term = SIDES[side]
    fake = critic_iteration["images"][fake_name]
    expected = mean_of(ADVERSARIAL[mode]["generator"], critic.scores(fake))
    assert logged(critic_iteration["run"], term) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_a_generator_step_raises_the_discriminator_score_of_its_fakes():
    """Adversarial terms only (no cycle or identity loss): after one step, the discriminators as they
    were before it score the generators' new fakes higher than their old ones."""
    model = tiny_model(lambda_A=0.0, lambda_B=0.0, lambda_identity=0.0)
    before = copy.deepcopy(model)
    batch = fixed_batch()
    one_iteration(model, batch)
    with torch.no_grad():
        for judge, generator, real in (("netD_A", "netG_A", "A"), ("netD_B", "netG_B", "B")):
            critic = getattr(before, judge)
            old = critic(getattr(before, generator)(batch[real])).mean().item()
            new = critic(getattr(model, generator)(batch[real])).mean().item()
            assert new > old, (judge, old, new)


# ---------------------------------------------------------------------- non-finite sides
def poison_output(net: nn.Module, *, when_trainable: bool) -> None:
    """Make ``net``'s output NaN when its parameters are trainable (its own discriminator loss) or when
    they are frozen (the generator loss, which judges the fakes through it)."""

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        trainable = next(module.parameters()).requires_grad
        return output * float("nan") if trainable == when_trainable else output

    net.register_forward_hook(hook)


def changed(before: nn.Module, after: nn.Module) -> bool:
    return any(not torch.equal(x, y) for x, y in zip(before.parameters(), after.parameters(), strict=True))


@pytest.mark.parametrize("nonfinite", ["generator", "discriminator"])
def test_a_nonfinite_loss_skips_only_its_own_optimizer_step(nonfinite):
    model = tiny_model()
    poison_output(model.netD_A, when_trainable=nonfinite == "discriminator")
    before = copy.deepcopy(model)
    run, _ = one_iteration(model, fixed_batch())

    metrics = run.callback_metrics
    logged_terms = {key[len("train/") : -len("_step")] for key in metrics if key.endswith("_step")}
    finite_side = {"D_A", "D_B"} if nonfinite == "generator" else GENERATOR_TERMS
    assert logged_terms == finite_side  # only the other side's losses were finite
    assert run.global_step == 1 and model.nonfinite_total == 1
    for name in ("netG_A", "netG_B", "netD_A", "netD_B"):
        stepped = name.startswith("netG") == (nonfinite == "discriminator")
        assert changed(getattr(before, name), getattr(model, name)) == stepped, name
        assert all(torch.isfinite(p).all() for p in getattr(model, name).parameters()), name
