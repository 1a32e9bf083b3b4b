"""Adversarial losses (lsgan, vanilla, wgangp, hinge) and the WGAN-GP gradient penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cyclegan.errors import check_choice

GAN_MODES = ("lsgan", "vanilla", "wgangp", "hinge")


class GANLoss(nn.Module):
    """The adversarial loss of one discriminator output map, averaged over all its elements.

    ``lsgan``: MSE to 1 (real) / 0 (fake); ``vanilla``: binary cross-entropy on logits; ``wgangp``:
    -mean for real, +mean for fake (the penalty is :func:`gradient_penalty`); ``hinge``: for the
    discriminator mean(relu(1 - D)) on real and mean(relu(1 + D)) on fake, for the generator -mean(D).
    The generator side of every mode is ``loss(D(fake), target_is_real=True, for_discriminator=False)``.
    """

    def __init__(self, gan_mode: str = "lsgan") -> None:
        super().__init__()
        check_choice("gan_mode", gan_mode, GAN_MODES, what="loss")
        self.gan_mode = gan_mode

    def forward(
        self, prediction: torch.Tensor, target_is_real: bool, *, for_discriminator: bool = True
    ) -> torch.Tensor:
        # Losses are reduced in float32 whatever the autocast dtype of the discriminator output.
        prediction = prediction.float()
        if self.gan_mode == "lsgan":
            return F.mse_loss(prediction, torch.full_like(prediction, float(target_is_real)))
        if self.gan_mode == "vanilla":
            target = torch.full_like(prediction, float(target_is_real))
            return F.binary_cross_entropy_with_logits(prediction, target)
        if self.gan_mode == "hinge" and for_discriminator:
            sign = -1.0 if target_is_real else 1.0
            return F.relu(1.0 + sign * prediction).mean()
        # wgangp (both sides) and the generator side of hinge.
        return -prediction.mean() if target_is_real else prediction.mean()


def gradient_penalty(
    discriminator: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor,
    *,
    grad_scale: float = 1.0,
) -> torch.Tensor:
    """Mean of (||dD(x)/dx||_2 - 1)^2 over samples x = alpha * real + (1 - alpha) * fake.

    ``alpha`` has shape (batch, 1, 1, 1). The graph is kept (create_graph) so the penalty trains D.
    ``grad_scale`` is the fp16 GradScaler's scale: the output is scaled before differentiating so
    small input gradients do not underflow, and the gradients are unscaled before the norm.
    """
    alpha = alpha.to(device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    output = discriminator(mixed)
    (grads,) = torch.autograd.grad(outputs=output.float().sum() * grad_scale, inputs=mixed, create_graph=True)
    grads = grads.float().flatten(1) / grad_scale
    # The 1e-16 keeps the norm differentiable where a gradient is exactly zero.
    return ((grads + 1e-16).norm(2, dim=1) - 1.0).square().mean()
