"""The GAN LightningModules (CycleGAN, CUT and pix2pix on the shared `GANModule`), their losses,
image pool, PatchNCE and LR schedules."""

from cyclegan.model.cut import CUT
from cyclegan.model.cyclegan import CycleGAN
from cyclegan.model.gan_module import MODEL_KEY, STATE_KEY, GANModule, NonFiniteLossError
from cyclegan.model.losses import GAN_MODES, GANLoss, gradient_penalty
from cyclegan.model.patch_nce import PatchProjection, patch_nce_loss, sample_patch_ids
from cyclegan.model.pix2pix import Pix2Pix
from cyclegan.model.pool import ImagePool
from cyclegan.model.schedules import LR_POLICIES, build_scheduler, linear_decay_factor

__all__ = [
    "CUT",
    "GAN_MODES",
    "LR_POLICIES",
    "MODEL_KEY",
    "STATE_KEY",
    "CycleGAN",
    "GANLoss",
    "GANModule",
    "ImagePool",
    "NonFiniteLossError",
    "PatchProjection",
    "Pix2Pix",
    "build_scheduler",
    "gradient_penalty",
    "linear_decay_factor",
    "patch_nce_loss",
    "sample_patch_ids",
]
