"""The CycleGAN LightningModule (Zhu et al. 2017): two generators, two discriminators, cycle losses.

The shared training machinery (optimizers and schedules, freezing, non-finite checks, logging, epoch
means, checkpoint state) lives in `cyclegan.model.gan_module.GANModule`; this file is CycleGAN's losses.

Distributed training: the discriminators are frozen during the generator step, so their parameters get
no gradient in that backward pass; use ``strategy="ddp_find_unused_parameters_true"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cyclegan.errors import SettingError, check_number
from cyclegan.model.gan_module import GANModule
from cyclegan.model.losses import GANLoss, gradient_penalty
from cyclegan.model.network_config import build_network, with_builder_defaults, without_input_channels
from cyclegan.model.pool import ImagePool
from cyclegan.nn import build_discriminator, build_generator


class CycleGAN(GANModule):
    """CycleGAN with the reference's losses, image pool and schedules.

    ``netG_A``: A -> B, ``netG_B``: B -> A, ``netD_A`` judges domain-B images (real B vs G_A's output),
    ``netD_B`` judges domain-A images. ``generator`` / ``discriminator`` are keyword dicts of
    :func:`cyclegan.nn.build_generator` / :func:`cyclegan.nn.build_discriminator` (``arch`` included);
    G_B swaps ``input_nc`` and ``output_nc``, and each discriminator gets its domain's channel count.
    Batches are dicts with image tensors ``A`` and ``B`` in [-1, 1] (other entries are ignored).

    Losses: ``gan_mode`` lsgan / vanilla / wgangp (with a gradient penalty weighted ``wgangp_lambda``) /
    hinge; cycle L1 weighted ``lambda_A`` / ``lambda_B``; identity L1 weighted ``lambda_identity`` times
    the cycle weight of the target domain (0 turns it off and skips its two generator passes). The
    discriminators see fakes through image pools of ``pool_size``; an iteration with a non-finite loss
    leaves the pools and the module's generator as they were, so its fakes (NaN, maybe) never reach a later
    discriminator step. The training settings shared by all
    models (``lr``, schedules, clipping, precision helpers, ...) are described in `GANModule`.
    """

    generator_names: ClassVar[dict[str, str]] = {"AtoB": "netG_A", "BtoA": "netG_B"}
    # One grid row per direction: the real image, its translation, the reconstruction, and the identity
    # image of the same domain (G_B(A) for A, G_A(B) for B) when the identity loss is on.
    grid_rows: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("real_A", "fake_B", "rec_A", "idt_B"),
        ("real_B", "fake_A", "rec_B", "idt_A"),
    )

    def __init__(
        self,
        generator: dict[str, Any],
        discriminator: dict[str, Any],
        *,
        gan_mode: str = "lsgan",
        lambda_A: float = 10.0,
        lambda_B: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        wgangp_lambda: float = 10.0,
        **training: Any,
    ) -> None:
        generator = with_builder_defaults(build_generator, generator)
        input_nc, output_nc = generator["input_nc"], generator["output_nc"]
        discriminator = with_builder_defaults(
            build_discriminator,
            without_input_channels(
                discriminator,
                expected=input_nc if input_nc == output_nc else None,
                who=f"the generator's input_nc={input_nc} / output_nc={output_nc}",
            ),
        )
        del discriminator["input_nc"]  # each discriminator gets the channel count of its domain
        for name, value in (
            ("lambda_A", lambda_A),
            ("lambda_B", lambda_B),
            ("lambda_identity", lambda_identity),
            ("wgangp_lambda", wgangp_lambda),
        ):
            check_number(name, value, minimum=0)
        if lambda_identity != 0 and input_nc != output_nc:
            raise SettingError(
                "lambda_identity",
                lambda_identity,
                f"needs input_nc == output_nc (got {input_nc} and {output_nc}): set lambda_identity=0",
            )
        super().__init__(**training)

        self.netG_A = build_network("generator", build_generator, generator)
        self.netG_B = build_generator(**{**generator, "input_nc": output_nc, "output_nc": input_nc})
        self.netD_A = build_network(
            "discriminator", build_discriminator, {**discriminator, "input_nc": output_nc}
        )
        self.netD_B = build_discriminator(**discriminator, input_nc=input_nc)
        self.gan_loss = GANLoss(gan_mode)  # checks gan_mode
        self.fake_A_pool = ImagePool(pool_size, self.rng)
        self.fake_B_pool = ImagePool(pool_size, self.rng)
        identity = ("idt_A", "idt_B") if lambda_identity > 0 else ()
        self.prepare_networks(
            {"G": ("G_A", "G_B", "cycle_A", "cycle_B", *identity, "G"), "D": ("D_A", "D_B")}
        )

    def optimizer_groups(self) -> dict[str, list[nn.Module]]:
        """One Adam over both generators, one over both discriminators."""
        return {"G": [self.netG_A, self.netG_B], "D": [self.netD_A, self.netD_B]}

    # ------------------------------------------------------------------ training
    def _discriminator_loss(self, net: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """0.5 * (loss(D(real), real) + loss(D(fake), fake)), plus the gradient penalty for wgangp.

        Under fp16 the penalty is scaled by the GradScaler's scale before this iteration's steps, and
        unscaled by the same value: only its underflow protection depends on the scale."""
        fake = fake.contiguous(memory_format=self.memory_format)
        pred_real, pred_fake = self.forward_together(net, real, fake)
        loss = 0.5 * (self.gan_loss(pred_real, True) + self.gan_loss(pred_fake, False))
        if self.hparams.gan_mode == "wgangp" and self.hparams.wgangp_lambda > 0:
            alpha = torch.rand((real.shape[0], 1, 1, 1), generator=self.rng)
            scaler = self.grad_scaler()
            scale = 1.0 if scaler is None else float(scaler.get_scale())
            loss = loss + self.hparams.wgangp_lambda * gradient_penalty(
                net, real, fake, alpha, grad_scale=scale
            )
        return loss

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """One CycleGAN iteration: a generator step (D frozen) on fresh fakes, then a discriminator step
        on pooled fakes. Returns the iteration's images under ``visuals`` for the image-grid logger.

        The discriminator loss is computed before the generator step: that step changes only generator
        weights and the fakes were made before it, so the loss is the same, and one finiteness check
        covers both losses before either optimizer steps. (Cost: the discriminator loss's graph is held
        during the generator's backward pass.)"""
        hp = self.hparams
        real_A, real_B = self.images_from(
            batch, {"A": hp.generator["input_nc"], "B": hp.generator["output_nc"]}
        )
        batch_size = real_A.shape[0]
        self.start_iteration(batch_size)

        identity = hp.lambda_identity > 0
        with self.frozen_except("G"):
            # six generator passes in three calls (forward_together): G_A on real_A and, for the identity
            # loss, real_B; G_B on real_B, fake_B and (identity) real_A; then G_A on fake_A
            identity_A, identity_B = ([real_B], [real_A]) if identity else ([], [])
            fake_B, *idt_A = self.forward_together(self.netG_A, real_A, *identity_A)
            fake_A, rec_A, *idt_B = self.forward_together(self.netG_B, real_B, fake_B, *identity_B)
            rec_B = self.netG_A(fake_A)
            losses = {
                "G_A": self.gan_loss(self.netD_A(fake_B), True, for_discriminator=False),
                "G_B": self.gan_loss(self.netD_B(fake_A), True, for_discriminator=False),
                "cycle_A": F.l1_loss(rec_A.float(), real_A.float()) * hp.lambda_A,
                "cycle_B": F.l1_loss(rec_B.float(), real_B.float()) * hp.lambda_B,
            }
            visuals = {
                "real_A": real_A,
                "fake_B": fake_B,
                "rec_A": rec_A,
                "real_B": real_B,
                "fake_A": fake_A,
                "rec_B": rec_B,
            }
            if identity:
                idt_A, idt_B = idt_A[0], idt_B[0]
                losses["idt_A"] = F.l1_loss(idt_A.float(), real_B.float()) * hp.lambda_B * hp.lambda_identity
                losses["idt_B"] = F.l1_loss(idt_B.float(), real_A.float()) * hp.lambda_A * hp.lambda_identity
                visuals.update(idt_A=idt_A, idt_B=idt_B)
            losses["G"] = torch.stack(list(losses.values())).sum()

        pools_before = self._pool_snapshot()
        with self.frozen_except("D"):
            losses["D_A"] = self._discriminator_loss(self.netD_A, real_B, self.fake_B_pool.query(fake_B))
            losses["D_B"] = self._discriminator_loss(self.netD_B, real_A, self.fake_A_pool.query(fake_A))

        finite = self.step_optimizers({"G": losses["G"], "D": losses["D_A"] + losses["D_B"]})
        if not all(finite.values()):
            self._restore_pools(pools_before)
        self.end_iteration(losses, finite, batch_size)
        return {"visuals": {name: image.detach() for name, image in visuals.items()}}

    def _pool_snapshot(self) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Both image pools and the module's generator as they are now, for `_restore_pools`."""
        return self.fake_A_pool.snapshot(), self.fake_B_pool.snapshot(), self.rng.get_state()

    def _restore_pools(self, snapshot: tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]) -> None:
        """Undo an iteration's pool queries and draws: a skipped iteration's fakes may be NaN, and a NaN
        image left in a pool would make later discriminator losses non-finite whenever it is drawn."""
        fake_A_images, fake_B_images, rng_state = snapshot
        self.fake_A_pool.restore(fake_A_images)
        self.fake_B_pool.restore(fake_B_images)
        self.rng.set_state(rng_state)

    # ------------------------------------------------------------------ evaluation
    def _log_cycle_losses(self, batch: Mapping[str, Any], stage: str) -> None:
        """Unweighted cycle-consistency L1 of both directions and their mean (``{stage}/cycle``)."""
        hp = self.hparams
        real_A, real_B = self.images_from(
            batch, {"A": hp.generator["input_nc"], "B": hp.generator["output_nc"]}
        )
        cycle_A = F.l1_loss(self.netG_B(self.netG_A(real_A)).float(), real_A.float())
        cycle_B = F.l1_loss(self.netG_A(self.netG_B(real_B)).float(), real_B.float())
        self.log_dict(
            {
                f"{stage}/cycle_A": cycle_A,
                f"{stage}/cycle_B": cycle_B,
                f"{stage}/cycle": (cycle_A + cycle_B) / 2,
            },
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=real_A.shape[0],
        )

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._log_cycle_losses(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._log_cycle_losses(batch, "test")

    # ------------------------------------------------------------------ checkpoint state
    def extra_process_state(self) -> dict[str, Any]:
        return {"fake_A_pool": self.fake_A_pool.state_dict(), "fake_B_pool": self.fake_B_pool.state_dict()}

    def load_extra_process_state(self, state: Mapping[str, Any]) -> None:
        self.fake_A_pool.load_state_dict(state["fake_A_pool"])
        self.fake_B_pool.load_state_dict(state["fake_B_pool"])
