"""The pix2pix LightningModule (Isola et al. 2017): a generator translating A to B on paired data, judged by a
conditional discriminator that sees the input with the output, and pulled to the target by an L1 loss.

The shared training machinery (optimizers and schedules, freezing, non-finite checks, logging, epoch
means, checkpoint state) lives in `cyclegan.model.gan_module.GANModule`; this file is pix2pix's losses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cyclegan.errors import SettingError, check_number
from cyclegan.model.gan_module import GANModule
from cyclegan.model.losses import GANLoss
from cyclegan.model.network_config import (
    build_network,
    plain_container,
    with_builder_defaults,
    without_input_channels,
)
from cyclegan.nn import batchnorm_mode, build_discriminator, build_generator

# The reference's pix2pix networks: U-Net 256 with batch norm and dropout, 70x70 PatchGAN with batch norm.
DEFAULT_GENERATOR = {"arch": "unet_256", "norm": "batch", "use_dropout": True}
DEFAULT_DISCRIMINATOR = {"arch": "basic", "norm": "batch"}


class Pix2Pix(GANModule):
    """pix2pix with the reference's losses, networks and iteration order.

    ``netG`` translates A to B; ``netD`` judges ``concat(A, B)`` pairs (``input_nc + output_nc``
    channels): real (A, B) against (A, G(A)). ``generator`` / ``discriminator`` are keyword dicts of
    :func:`cyclegan.nn.build_generator` / :func:`cyclegan.nn.build_discriminator` over the reference's
    defaults (unet_256, batch norm, dropout; basic PatchGAN, batch norm). Batches are dicts with aligned
    image tensors ``A`` and ``B`` in [-1, 1] (other entries are ignored).

    Losses: ``gan_mode`` (vanilla by default; lsgan, hinge) for D, 0.5 * (D(real) + D(fake)), and for G
    its adversarial loss plus L1(G(A), B) weighted ``lambda_L1``. No image pool: D sees the current fake.
    An iteration steps D first, then G against the updated D, as the reference does. Validation and test
    log ``{stage}/L1``, the unweighted L1 of G(A) to B, with the generator's BatchNorm layers normalizing
    each image by its own statistics (the inference default, see `cyclegan.nn.batchnorm`). The training
    settings shared by all models (``lr``, schedules, clipping, ...) are described in `GANModule`.
    """

    generator_names: ClassVar[dict[str, str]] = {"AtoB": "netG"}
    grid_rows: ClassVar[tuple[tuple[str, ...], ...]] = (("real_A", "fake_B", "real_B"),)

    def __init__(
        self,
        generator: dict[str, Any] | None = None,
        discriminator: dict[str, Any] | None = None,
        *,
        gan_mode: str = "vanilla",
        lambda_L1: float = 100.0,
        **training: Any,
    ) -> None:
        generator = with_builder_defaults(
            build_generator, {**DEFAULT_GENERATOR, **plain_container(generator or {})}
        )
        input_nc, output_nc = generator["input_nc"], generator["output_nc"]
        discriminator = with_builder_defaults(
            build_discriminator,
            without_input_channels(
                {**DEFAULT_DISCRIMINATOR, **plain_container(discriminator or {})},
                expected=input_nc + output_nc,
                who=f"the conditional discriminator's input_nc + output_nc = {input_nc + output_nc}",
            ),
        )
        del discriminator["input_nc"]  # the discriminator sees A and B stacked
        if gan_mode == "wgangp":
            raise SettingError(
                "gan_mode",
                gan_mode,
                "is not for pix2pix: wgangp needs a gradient penalty pix2pix does not implement",
            )
        check_number("lambda_L1", lambda_L1, minimum=0)
        # records the completed generator and discriminator settings (inference rebuilds netG from them)
        super().__init__(**training)

        self.netG = build_network("generator", build_generator, generator)
        self.netD = build_network(
            "discriminator", build_discriminator, {**discriminator, "input_nc": input_nc + output_nc}
        )
        self.gan_loss = GANLoss(gan_mode)  # checks gan_mode
        self.prepare_networks({"D": ("D_real", "D_fake", "D"), "G": ("G_GAN", "G_L1", "G")})

    def optimizer_groups(self) -> dict[str, list[nn.Module]]:
        """One Adam for the generator, one for the discriminator (stepped D first)."""
        return {"G": [self.netG], "D": [self.netD]}

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """One pix2pix iteration: G(A), a discriminator step on (A, B) against (A, G(A)), then a generator
        step against the updated discriminator. Returns the images under ``visuals`` for the grid logger."""
        hp = self.hparams
        real_A, real_B = self.images_from(
            batch, {"A": hp.generator["input_nc"], "B": hp.generator["output_nc"]}
        )
        batch_size = real_A.shape[0]
        self.start_iteration(batch_size)
        statistics = self._running_statistics()

        with self.frozen_except("G"):
            fake_B = self.netG(real_A)
        losses: dict[str, torch.Tensor] = {}
        with self.frozen_except("D"):
            fake_pair = torch.cat([real_A, fake_B.detach()], 1)
            losses["D_fake"] = self.gan_loss(self.netD(fake_pair), False)
            losses["D_real"] = self.gan_loss(self.netD(torch.cat([real_A, real_B], 1)), True)
            losses["D"] = 0.5 * (losses["D_fake"] + losses["D_real"])
        finite = self.step_optimizers({"D": losses["D"]})

        with self.frozen_except("G"):
            prediction = self.netD(torch.cat([real_A, fake_B], 1))
            losses["G_GAN"] = self.gan_loss(prediction, True, for_discriminator=False)
            losses["G_L1"] = F.l1_loss(fake_B.float(), real_B.float()) * hp.lambda_L1
            losses["G"] = losses["G_GAN"] + losses["G_L1"]
        finite.update(self.step_optimizers({"G": losses["G"]}))
        if not all(finite.values()):
            self._restore_running_statistics(statistics)

        self.end_iteration(losses, finite, batch_size)
        visuals = {"real_A": real_A, "fake_B": fake_B, "real_B": real_B}
        return {"visuals": {name: image.detach() for name, image in visuals.items()}}

    def _running_statistics(self) -> dict[str, torch.Tensor]:
        """A copy of the BatchNorm running statistics of both networks (a few thousand numbers)."""
        return {
            name: buffer.clone()
            for name, buffer in self.named_buffers()
            if name.rpartition(".")[2] in ("running_mean", "running_var", "num_batches_tracked")
        }

    def _restore_running_statistics(self, saved: Mapping[str, torch.Tensor]) -> None:
        """Undo an iteration's running-statistics updates: the forward passes of a skipped (non-finite)
        iteration would leave NaN in them, which inference with ``batchnorm=running`` would then use."""
        buffers = dict(self.named_buffers())
        with torch.no_grad():
            for name, value in saved.items():
                buffers[name].copy_(value)

    # ------------------------------------------------------------------ evaluation
    def _log_l1(self, batch: Mapping[str, Any], stage: str) -> None:
        """The unweighted L1 of G(A) to B (``{stage}/L1``)."""
        hp = self.hparams
        real_A, real_B = self.images_from(
            batch, {"A": hp.generator["input_nc"], "B": hp.generator["output_nc"]}
        )
        with batchnorm_mode(self.netG, "image"):
            fake_B = self.netG(real_A)
        self.log(
            f"{stage}/L1",
            F.l1_loss(fake_B.float(), real_B.float()),
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=real_A.shape[0],
        )

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._log_l1(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._log_l1(batch, "test")
