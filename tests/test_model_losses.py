"""GAN losses on known inputs (against float64 formulas) and the WGAN-GP gradient penalty."""

import math

import pytest
import torch
from torch import nn

from cyclegan.model import GANLoss, gradient_penalty

PREDICTION = torch.tensor([[-2.0, -0.5], [0.25, 3.0]], dtype=torch.float64).view(1, 1, 2, 2)
VALUES = PREDICTION.flatten().tolist()


def mean(values):
    return sum(values) / len(values)


@pytest.mark.parametrize(
    ("mode", "target_is_real", "for_discriminator", "expected"),
    [
        ("lsgan", True, True, mean([(v - 1) ** 2 for v in VALUES])),
        ("lsgan", False, True, mean([v**2 for v in VALUES])),
        ("lsgan", True, False, mean([(v - 1) ** 2 for v in VALUES])),
        ("vanilla", True, True, mean([math.log1p(math.exp(-v)) for v in VALUES])),
        ("vanilla", False, True, mean([math.log1p(math.exp(v)) for v in VALUES])),
        ("vanilla", True, False, mean([math.log1p(math.exp(-v)) for v in VALUES])),
        ("wgangp", True, True, -mean(VALUES)),
        ("wgangp", False, True, mean(VALUES)),
        ("wgangp", True, False, -mean(VALUES)),
        ("hinge", True, True, mean([max(0.0, 1 - v) for v in VALUES])),
        ("hinge", False, True, mean([max(0.0, 1 + v) for v in VALUES])),
        ("hinge", True, False, -mean(VALUES)),
    ],
)
def test_gan_loss_values(mode, target_is_real, for_discriminator, expected):
    loss = GANLoss(mode)(PREDICTION.float(), target_is_real, for_discriminator=for_discriminator)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_gan_loss_reduces_low_precision_outputs_in_float32():
    prediction = PREDICTION.to(torch.bfloat16)
    assert GANLoss("lsgan")(prediction, True).dtype == torch.float32


def test_unknown_gan_mode_is_rejected():
    with pytest.raises(ValueError, match="gan_mode must be one of"):
        GANLoss("wgan")


class LinearCritic(nn.Module):
    """D(x) = sum(w * x) per sample: its input gradient is w everywhere, so the penalty is (||w|| - 1)^2."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(1)


@pytest.mark.parametrize("grad_scale", [1.0, 1024.0])
def test_gradient_penalty_matches_closed_form_and_trains_the_critic(grad_scale):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 4, 4, generator=generator, dtype=torch.float64)
    critic = LinearCritic(weight.float().clone())
    real = torch.randn(2, 3, 4, 4, generator=generator)
    fake = torch.randn(2, 3, 4, 4, generator=generator)
    alpha = torch.rand(2, 1, 1, 1, generator=generator)

    penalty = gradient_penalty(critic, real, fake, alpha, grad_scale=grad_scale)
    norm = weight.norm().item()
    assert penalty.item() == pytest.approx((norm - 1) ** 2, rel=1e-5)

    penalty.backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||: the penalty reaches the critic's weights.
    expected_grad = 2 * (norm - 1) * weight / norm
    torch.testing.assert_close(critic.weight.grad.double(), expected_grad, rtol=1e-4, atol=1e-6)


def test_gradient_penalty_is_zero_for_a_unit_norm_critic():
    weight = torch.zeros(1, 2, 2)
    weight[0, 0, 0] = 1.0
    critic = LinearCritic(weight)
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    penalty = gradient_penalty(critic, real, fake, torch.full((3, 1, 1, 1), 0.3))
    assert penalty.item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_penalty_uses_the_interpolated_points():
    # A quadratic critic D(x) = sum(x^2)/2 has input gradient x, so the norm depends on where it is taken.
    critic = nn.Module()
    critic.forward = lambda x: 0.5 * x.square().flatten(1).sum(1)
    real = torch.full((1, 1, 1, 2), 2.0)
    fake = torch.zeros(1, 1, 1, 2)
    alpha = torch.full((1, 1, 1, 1), 0.25)
    mixed_norm = math.sqrt(2 * 0.5**2)  # x = 0.25 * 2 + 0.75 * 0 = 0.5 in both elements
    assert gradient_penalty(critic, real, fake, alpha).item() == pytest.approx(
        (mixed_norm - 1) ** 2, rel=1e-5
    )
