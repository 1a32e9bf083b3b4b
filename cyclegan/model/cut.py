"""CUT and FastCUT (Park et al. 2020): one generator, one PatchGAN, and PatchNCE between input and output.

The shared training machinery lives in `cyclegan.model.gan_module.GANModule`; the contrastive loss and
its projection head ``netF`` in `cyclegan.model.patch_nce`. FastCUT is this model with ``nce_idt=False``,
``flip_equivariance=True`` and ``lambda_NCE=10`` (``model=fastcut``).

Distributed training: the discriminator is frozen during the generator step and the generator during the
discriminator step; use ``strategy="ddp_find_unused_parameters_true"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from cyclegan.errors import SettingError, check_bool, check_int, check_number
from cyclegan.model.gan_module import GANModule
from cyclegan.model.losses import GANLoss
from cyclegan.model.network_config import build_network, with_builder_defaults, without_input_channels
from cyclegan.model.patch_nce import PatchProjection, patch_nce_loss, sample_patch_ids
from cyclegan.nn import build_discriminator, build_generator, init_weights


class CUT(GANModule):
    """Contrastive unpaired translation A -> B with the reference CUT's losses and order of steps.

    ``netG``: A -> B (a ResNet generator: PatchNCE reads its ``model[i]`` outputs for ``i`` in
    ``nce_layers``), ``netD`` judges domain-B images, ``netF`` projects sampled patches of those features
    (one MLP per layer to ``netF_nc`` dims, initialized like the generator). ``generator`` /
    ``discriminator`` are keyword dicts of :func:`cyclegan.nn.build_generator` /
    :func:`cyclegan.nn.build_discriminator`. Batches are dicts with image tensors ``A`` and ``B``.

    Per iteration: G translates A (and B when ``nce_idt``: the identity NCE of CUT) in one pass; D steps
    on real B against the detached fakes; then G and F step against the updated D on ``lambda_GAN`` times
    the GAN loss plus ``lambda_NCE`` times the PatchNCE loss (``num_patches`` positions per layer,
    temperature ``nce_T``), averaged over layers and, with ``nce_idt``, over the A and B halves. With
    ``flip_equivariance`` (FastCUT) G sees its inputs mirrored with probability 1/2 and the features of
    its output are mirrored back before the comparison. Randomness (flips, patch positions) comes from the
    module's checkpointed generator, so resumes repeat it. Shared training settings: see `GANModule`
    (the defaults here are CUT's: 200 epochs at the initial learning rate, 200 of linear decay).
    """

    generator_names: ClassVar[dict[str, str]] = {"AtoB": "netG"}
    grid_rows: ClassVar[tuple[tuple[str, ...], ...]] = (("real_A", "fake_B", "real_B", "idt_B"),)

    def __init__(
        self,
        generator: dict[str, Any],
        discriminator: dict[str, Any],
        *,
        gan_mode: str = "lsgan",
        lambda_GAN: float = 1.0,
        lambda_NCE: float = 1.0,
        nce_idt: bool = True,
        flip_equivariance: bool = False,
        nce_layers: Sequence[int] = (0, 4, 8, 12, 16),
        num_patches: int = 256,
        nce_T: float = 0.07,
        netF_nc: int = 256,
        n_epochs: int = 200,
        n_epochs_decay: int = 200,
        **training: Any,
    ) -> None:
        generator = with_builder_defaults(build_generator, generator)
        input_nc, output_nc = generator["input_nc"], generator["output_nc"]
        discriminator = with_builder_defaults(
            build_discriminator,
            without_input_channels(
                discriminator, expected=output_nc, who=f"the generator's output_nc={output_nc}"
            ),
        )
        del discriminator["input_nc"]  # the discriminator judges domain-B images
        for name, value in (("lambda_GAN", lambda_GAN), ("lambda_NCE", lambda_NCE)):
            check_number(name, value, minimum=0)
        check_bool("nce_idt", nce_idt)
        check_bool("flip_equivariance", flip_equivariance)
        check_int("num_patches", num_patches, 1)
        check_int("netF_nc", netF_nc, 1)
        check_number("nce_T", nce_T, above=0)
        if input_nc != output_nc:
            raise SettingError(
                "input_nc",
                input_nc,
                f"must equal output_nc={output_nc}: CUT runs its generator on its own output (PatchNCE "
                "compares the features of both)",
                label="generator input_nc",
            ).within("generator")
        super().__init__(n_epochs=n_epochs, n_epochs_decay=n_epochs_decay, **training)

        self.netG = build_network("generator", build_generator, generator)
        if not hasattr(self.netG, "feature_channels"):
            raise SettingError(
                "arch",
                generator["arch"],
                "is not a ResNet generator: CUT reads PatchNCE features from resnet, resnet_9blocks or "
                "resnet_6blocks",
                label="generator arch",
            ).within("generator")
        self.nce_layers = list(nce_layers)
        try:
            channels = self.netG.feature_channels(self.nce_layers)
        except ValueError as error:
            raise SettingError("nce_layers", self.nce_layers, str(error)) from None
        self.netD = build_network(
            "discriminator", build_discriminator, {**discriminator, "input_nc": output_nc}
        )
        # netF is initialized like the generator (init_weights' defaults where the settings have none)
        init = {"init_type": generator.get("init_type"), "gain": generator.get("init_gain")}
        init = {name: value for name, value in init.items() if value is not None}
        self.netF = init_weights(PatchProjection(channels, netF_nc), **init)
        self.gan_loss = GANLoss(gan_mode)
        identity = ("NCE_Y",) if nce_idt else ()
        self.prepare_networks({"G": ("G_GAN", "NCE", *identity, "G"), "D": ("D_real", "D_fake", "D")})

    def optimizer_groups(self) -> dict[str, list[nn.Module]]:
        """One Adam over G and F (the reference's two Adams with equal settings step alike), one over D."""
        return {"G": [self.netG, self.netF], "D": [self.netD]}

    # ------------------------------------------------------------------ training
    def patch_nce(
        self,
        source_features: Sequence[torch.Tensor],
        fakes: torch.Tensor,
        generator: torch.Generator,
        *,
        flipped: bool = False,
    ) -> torch.Tensor:
        """Per-image PatchNCE, averaged over the layers, between the sources (their ``nce_layers``
        features) and ``fakes``, their translations (made from mirrored sources when ``flipped``)."""
        hp = self.hparams
        queries = self.netG(fakes, layers=self.nce_layers, encode_only=True)
        if flipped:
            queries = [feature.flip(3) for feature in queries]
        patch_ids = sample_patch_ids(source_features, hp.num_patches, generator)
        with torch.no_grad():  # the keys get no gradient (as in the reference)
            keys = self.netF([feature.detach() for feature in source_features], patch_ids)
        queries = self.netF(queries, patch_ids)
        losses = [patch_nce_loss(q, k, hp.nce_T) for q, k in zip(queries, keys, strict=True)]
        return torch.stack(losses).mean(dim=0)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """One CUT iteration: G's forward, the D step on it, then the G (and F) step against the updated
        D. Returns the iteration's images under ``visuals`` for the image-grid logger."""
        hp = self.hparams
        real_A, real_B = self.images_from(
            batch, {"A": hp.generator["input_nc"], "B": hp.generator["output_nc"]}
        )
        batch_size = real_A.shape[0]
        self.start_iteration(batch_size)
        flipped = hp.flip_equivariance and bool(torch.rand((), generator=self.rng) < 0.5)
        sources = torch.cat([real_A, real_B]) if hp.nce_idt else real_A

        with self.frozen_except("G"):
            inputs = sources.flip(3).contiguous(memory_format=self.memory_format) if flipped else sources
            fakes, features = self.netG(inputs, layers=self.nce_layers)
            fake_B = fakes[:batch_size]

        with self.frozen_except("D"):
            pred_real, pred_fake = self.forward_together(self.netD, real_B, fake_B.detach())
            losses = {"D_real": self.gan_loss(pred_real, True), "D_fake": self.gan_loss(pred_fake, False)}
            losses["D"] = 0.5 * (losses["D_real"] + losses["D_fake"])
        finite = self.step_optimizers({"D": losses["D"]})

        with self.frozen_except("G"):
            losses["G_GAN"] = self.gan_loss(self.netD(fake_B), True, for_discriminator=False) * hp.lambda_GAN
            if flipped:  # the sources' own features, unmirrored; keys need no graph
                with torch.no_grad():
                    features = self.netG(sources, layers=self.nce_layers, encode_only=True)
            nce = self.patch_nce(features, fakes, self.rng, flipped=flipped) * hp.lambda_NCE
            losses["NCE"] = nce[:batch_size].mean()
            if hp.nce_idt:
                losses["NCE_Y"] = nce[batch_size:].mean()
            losses["G"] = losses["G_GAN"] + nce.mean()
        finite.update(self.step_optimizers({"G": losses["G"]}))

        self.end_iteration(losses, finite, batch_size)
        visuals = {"real_A": real_A, "fake_B": fake_B, "real_B": real_B}
        if hp.nce_idt:
            visuals["idt_B"] = fakes[batch_size:]
        if flipped:  # show the translations the way round the inputs are
            visuals.update({name: visuals[name].flip(3) for name in ("fake_B", "idt_B") if name in visuals})
        return {"visuals": {name: image.detach() for name, image in visuals.items()}}

    # ------------------------------------------------------------------ evaluation
    def _log_patch_nce(self, batch: Mapping[str, Any], batch_idx: int, stage: str) -> None:
        """The unweighted PatchNCE of G(A) against A (how much of A's content survives), at patch
        positions drawn from a generator seeded by ``batch_idx``: repeatable, and the training draws
        are left alone."""
        (real_A,) = self.images_from(batch, {"A": self.hparams.generator["input_nc"]})
        fake_B, features = self.netG(real_A, layers=self.nce_layers)
        positions = torch.Generator().manual_seed(batch_idx)
        self.log(
            f"{stage}/nce",
            self.patch_nce(features, fake_B, positions).mean(),
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=real_A.shape[0],
        )

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._log_patch_nce(batch, batch_idx, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._log_patch_nce(batch, batch_idx, "test")
