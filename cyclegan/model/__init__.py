"""The GAN LightningModules (CycleGAN and CUT on the shared `GANModule`), their losses, image pool, LR
schedules and image-grid logging callback."""

from cyclegan.model.cut import CUT
from cyclegan.model.cyclegan import CycleGAN
from cyclegan.model.gan_module import MODEL_KEY, STATE_KEY, GANModule, NonFiniteLossError
from cyclegan.model.image_logger import ImageGridLogger, image_grid
from cyclegan.model.losses import GAN_MODES, GANLoss, gradient_penalty
from cyclegan.model.patch_nce import PatchProjection, patch_nce_loss, sample_patch_ids
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
    "ImageGridLogger",
    "ImagePool",
    "NonFiniteLossError",
    "PatchProjection",
    "build_scheduler",
    "gradient_penalty",
    "image_grid",
    "linear_decay_factor",
    "patch_nce_loss",
    "sample_patch_ids",
]
