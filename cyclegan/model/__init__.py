"""The GAN LightningModules (CycleGAN on the shared `GANModule`), their losses, image pool and LR
schedules."""

from cyclegan.model.cyclegan import CycleGAN
from cyclegan.model.gan_module import MODEL_KEY, STATE_KEY, GANModule, NonFiniteLossError
from cyclegan.model.losses import GAN_MODES, GANLoss, gradient_penalty
from cyclegan.model.pool import ImagePool
from cyclegan.model.schedules import LR_POLICIES, build_scheduler, linear_decay_factor

__all__ = [
    "GAN_MODES",
    "LR_POLICIES",
    "MODEL_KEY",
    "STATE_KEY",
    "CycleGAN",
    "GANLoss",
    "GANModule",
    "ImagePool",
    "NonFiniteLossError",
    "build_scheduler",
    "gradient_penalty",
    "linear_decay_factor",
]
