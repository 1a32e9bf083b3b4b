"""The GAN LightningModules (CycleGAN and pix2pix on the shared `GANModule`), their losses, image pool,
LR schedules and image-grid logging callback."""

from cyclegan.model.cyclegan import CycleGAN
from cyclegan.model.gan_module import MODEL_KEY, STATE_KEY, GANModule, NonFiniteLossError
from cyclegan.model.image_logger import ImageGridLogger, image_grid
from cyclegan.model.losses import GAN_MODES, GANLoss, gradient_penalty
from cyclegan.model.pix2pix import Pix2Pix
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
    "ImageGridLogger",
    "ImagePool",
    "NonFiniteLossError",
    "Pix2Pix",
    "build_scheduler",
    "gradient_penalty",
    "image_grid",
    "linear_decay_factor",
]
