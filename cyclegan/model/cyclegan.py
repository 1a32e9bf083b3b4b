"""The CycleGAN LightningModule: two generators, two discriminators, manual optimization.

Step counting: under manual optimization each optimizer step counts, so ``trainer.global_step`` grows by
2 per CycleGAN iteration (one generator step, one discriminator step) and a Trainer's ``max_steps``
counts optimizer steps: ``max_steps=2 * iterations``. A step skipped for a non-finite loss does not
count. Iteration-based settings of this package (``image_log_every_n_steps``) count batches.

Logging: the losses of an iteration (``train/<loss>_step``), the learning rates and images/s are logged
at the Trainer's logging steps only (every ``log_every_n_steps`` iterations), where Lightning writes them.
Epoch means (``train/<loss>_epoch``) come from sums the module keeps and checkpoints itself, so the mean
of an epoch interrupted by a resume is the mean over the whole epoch.

Distributed training: the discriminators are frozen during the generator step, so their parameters get
no gradient in that backward pass; use ``strategy="ddp_find_unused_parameters_true"``.
"""

from __future__ import annotations

import inspect
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from cyclegan.model.losses import GAN_MODES, GANLoss, gradient_penalty
from cyclegan.model.pool import ImagePool
from cyclegan.model.processes import gather_from_processes
from cyclegan.model.schedules import build_scheduler, check_schedule
from cyclegan.nn import build_discriminator, build_generator

# Key of this module's extra training state inside a Lightning checkpoint.
STATE_KEY = "cyclegan_state"
_STATE_VERSION = 2


class NonFiniteLossError(RuntimeError):
    """Raised when ``max_consecutive_nonfinite`` iterations in a row had a non-finite loss.

    No non-finite step updated anything (the module skips it, or under fp16 the GradScaler does), so the
    weights and optimizer state are those of the last finite step and can be checkpointed.
    """


def plain_container(value: Any) -> Any:
    """``value`` with OmegaConf containers, mappings and sequences turned into plain dicts and lists."""
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(key): plain_container(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_container(item) for item in value]
    return value


def _with_builder_defaults(builder: Callable[..., nn.Module], config: dict[str, Any]) -> dict[str, Any]:
    """``config`` completed with the builder's keyword defaults, so checkpoints record every setting."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(builder).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return {**defaults, **config}


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class CycleGAN(pl.LightningModule):
    """CycleGAN (Zhu et al. 2017) with the reference's losses, image pool and schedules.

    ``netG_A``: A -> B, ``netG_B``: B -> A, ``netD_A`` judges domain-B images (real B vs G_A's output),
    ``netD_B`` judges domain-A images. ``generator`` / ``discriminator`` are keyword dicts of
    :func:`cyclegan.nn.build_generator` / :func:`cyclegan.nn.build_discriminator` (``arch`` included);
    G_B swaps ``input_nc`` and ``output_nc``, and each discriminator gets its domain's channel count.
    Batches are dicts with image tensors ``A`` and ``B`` in [-1, 1] (other entries are ignored; the
    datamodule itself counts and logs skipped files).

    Losses: ``gan_mode`` lsgan / vanilla / wgangp (with a gradient penalty weighted ``wgangp_lambda``) /
    hinge; cycle L1 weighted ``lambda_A`` / ``lambda_B``; identity L1 weighted ``lambda_identity`` times
    the cycle weight of the target domain (0 turns it off and skips its two generator passes).
    Schedules (``lr_policy``): linear, step, cosine, plateau, stepped once per training epoch.
    ``gradient_clip_val`` clips each optimizer's gradient norm (after fp16 unscaling). A non-finite loss
    skips that optimizer step (both losses are checked before either step, with one device sync per
    iteration), and an iteration with any non-finite loss leaves the image pools and the module's generator
    as they were, so its fakes (NaN, maybe) never reach a later discriminator step;
    ``max_consecutive_nonfinite`` such iterations in a row raise
    :class:`NonFiniteLossError` (None never stops). ``channels_last`` and ``compile`` (True, or a dict of
    ``torch.compile`` arguments) apply to the four networks. ``pool_seed`` seeds the image pool's own
    generator (None: derived from ``torch.initial_seed()``, i.e. from ``seed_everything``), offset by the
    process rank. ``image_log_every_n_steps`` adds an :class:`~cyclegan.model.ImageGridLogger` unless the
    Trainer already has one (0 or None: no image logging).
    """

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
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_policy: str = "linear",
        n_epochs: int = 100,
        n_epochs_decay: int = 100,
        lr_decay_iters: int = 50,
        lr_gamma: float = 0.1,
        wgangp_lambda: float = 10.0,
        gradient_clip_val: float | None = None,
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
        max_consecutive_nonfinite: int | None = 10,
        image_log_every_n_steps: int | None = 200,
        pool_seed: int | None = None,
    ) -> None:
        super().__init__()
        generator = _with_builder_defaults(build_generator, plain_container(generator))
        discriminator = plain_container(discriminator)
        compile = plain_container(compile)
        input_nc, output_nc = generator["input_nc"], generator["output_nc"]
        if "input_nc" in discriminator:
            _check(
                input_nc == output_nc == discriminator["input_nc"],
                f"discriminator input_nc={discriminator['input_nc']} conflicts with the generator's "
                f"input_nc={input_nc} / output_nc={output_nc}: leave it out, each discriminator gets the "
                "channel count of the domain it judges",
            )
            discriminator = {k: v for k, v in discriminator.items() if k != "input_nc"}
        discriminator = _with_builder_defaults(build_discriminator, discriminator)
        del discriminator["input_nc"]
        _check(gan_mode in GAN_MODES, f"gan_mode must be one of {GAN_MODES}, got {gan_mode!r}")
        check_schedule(
            lr_policy,
            n_epochs=n_epochs,
            n_epochs_decay=n_epochs_decay,
            lr_decay_iters=lr_decay_iters,
            lr_gamma=lr_gamma,
        )
        for name, value in (
            ("lambda_A", lambda_A),
            ("lambda_B", lambda_B),
            ("lambda_identity", lambda_identity),
            ("wgangp_lambda", wgangp_lambda),
        ):
            _check(value >= 0, f"{name} must be >= 0, got {value}")
        _check(lr > 0, f"lr must be > 0, got {lr}")
        _check(0 <= beta1 < 1 and 0 <= beta2 < 1, f"beta1 and beta2 must be in [0, 1), got {beta1}, {beta2}")
        _check(
            lambda_identity == 0 or input_nc == output_nc,
            f"lambda_identity={lambda_identity} needs input_nc == output_nc (got {input_nc} and "
            f"{output_nc}): set lambda_identity=0",
        )
        _check(
            gradient_clip_val is None or gradient_clip_val > 0,
            f"gradient_clip_val must be None or > 0, got {gradient_clip_val}",
        )
        _check(
            max_consecutive_nonfinite is None or max_consecutive_nonfinite >= 1,
            f"max_consecutive_nonfinite must be None or >= 1, got {max_consecutive_nonfinite}",
        )
        _check(
            image_log_every_n_steps is None or image_log_every_n_steps >= 0,
            f"image_log_every_n_steps must be None or >= 0, got {image_log_every_n_steps}",
        )
        _check(
            isinstance(compile, (bool, dict)),
            f"compile must be true/false or a dict of torch.compile arguments, got {compile!r}",
        )
        # Arguments were converted to plain containers above; save_hyperparameters reads them from here.
        self.save_hyperparameters()
        self.automatic_optimization = False

        self.netG_A = build_generator(**generator)
        self.netG_B = build_generator(**{**generator, "input_nc": output_nc, "output_nc": input_nc})
        self.netD_A = build_discriminator(**discriminator, input_nc=output_nc)
        self.netD_B = build_discriminator(**discriminator, input_nc=input_nc)
        self.gan_loss = GANLoss(gan_mode)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        for net in self._networks():
            net.to(memory_format=self.memory_format)
            if compile:
                net.compile(**(compile if isinstance(compile, dict) else {}))

        # Randomness the module owns (pool choices, gradient-penalty mixing): a CPU generator that is
        # checkpointed, so the global RNG is never touched and resumed runs repeat the same draws.
        self.rng = torch.Generator()
        self.rng.manual_seed(self._rank_seed())
        self.fake_A_pool = ImagePool(pool_size, self.rng)
        self.fake_B_pool = ImagePool(pool_size, self.rng)
        self.nonfinite_consecutive = 0
        self.nonfinite_total = 0
        identity = ("idt_A", "idt_B") if lambda_identity > 0 else ()
        generator_losses = ("G_A", "G_B", "cycle_A", "cycle_B", *identity, "G")
        # Order of the per-iteration loss vector: generator terms and their total "G", then D_A, D_B.
        self.loss_names: tuple[str, ...] = (*generator_losses, "D_A", "D_B")
        self._num_generator_losses = len(generator_losses)
        # This epoch's batch-size-weighted loss sums, and the weights (images) of the generator and the
        # discriminator losses: finite steps only.
        self._epoch_loss_sums = torch.zeros(len(self.loss_names))
        self._epoch_loss_weights = [0.0, 0.0]
        self._iteration_log: tuple[torch.Tensor, bool, bool, int] | None = None
        self._last_step_start: float | None = None
        self._last_batch_size = 0
        self._images_per_sec: float | None = None

    # ------------------------------------------------------------------ set-up
    def _networks(self) -> tuple[nn.Module, ...]:
        return (self.netG_A, self.netG_B, self.netD_A, self.netD_B)

    def _rank_seed(self) -> int:
        seed = self.hparams.pool_seed
        base = torch.initial_seed() if seed is None else int(seed)
        rank = self.trainer.global_rank if self._trainer is not None else 0
        return (base * 1_000_003 + rank) % (2**63)

    def setup(self, stage: str) -> None:
        """Seed the module's generator now that the process rank (and seed_everything's seed) is known.

        A checkpoint being resumed is restored after this and replaces the seeded state.
        """
        if stage == "fit":
            self.rng.manual_seed(self._rank_seed())

    def configure_callbacks(self) -> list[pl.Callback]:
        """An image-grid logger every ``image_log_every_n_steps`` iterations, unless the Trainer has one."""
        from cyclegan.model.image_logger import ImageGridLogger

        every = self.hparams.image_log_every_n_steps
        if not every or any(isinstance(cb, ImageGridLogger) for cb in self.trainer.callbacks):
            return []
        return [ImageGridLogger(every_n_steps=every)]

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[Any]]:
        """One Adam over both generators, one over both discriminators, and an epoch schedule for each."""
        hp = self.hparams
        betas = (hp.beta1, hp.beta2)
        opt_g = torch.optim.Adam(
            itertools.chain(self.netG_A.parameters(), self.netG_B.parameters()), lr=hp.lr, betas=betas
        )
        opt_d = torch.optim.Adam(
            itertools.chain(self.netD_A.parameters(), self.netD_B.parameters()), lr=hp.lr, betas=betas
        )
        schedule = {
            "n_epochs": hp.n_epochs,
            "n_epochs_decay": hp.n_epochs_decay,
            "lr_decay_iters": hp.lr_decay_iters,
            "lr_gamma": hp.lr_gamma,
        }
        schedulers = [build_scheduler(opt, hp.lr_policy, **schedule) for opt in (opt_g, opt_d)]
        return [opt_g, opt_d], schedulers

    # ------------------------------------------------------------------ training
    def _images(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, Mapping) or "A" not in batch or "B" not in batch:
            found = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(f"CycleGAN expects batches as dicts with image tensors 'A' and 'B', got {found}")
        real_A, real_B = batch["A"], batch["B"]
        hp = self.hparams
        for name, images, channels in (
            ("A", real_A, hp.generator["input_nc"]),
            ("B", real_B, hp.generator["output_nc"]),
        ):
            if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != channels:
                shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
                raise ValueError(
                    f"batch[{name!r}] must be a (batch, {channels}, H, W) tensor for this model's "
                    f"generator channels, got {shape}"
                )
        return (
            real_A.contiguous(memory_format=self.memory_format),
            real_B.contiguous(memory_format=self.memory_format),
        )

    def _grad_scaler(self) -> torch.amp.GradScaler | None:
        """The fp16 GradScaler of the Trainer's precision plugin (16-mixed), else None."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        return scaler if scaler is not None and scaler.is_enabled() else None

    def _finite_on_all_processes(self, loss_G: torch.Tensor, loss_D: torch.Tensor) -> tuple[bool, bool]:
        """Whether the generator and the discriminator loss are finite on every process.

        Both are checked in one tensor: one device sync (and one all-reduce) per iteration.
        """
        losses = torch.stack([loss_G.detach().float(), loss_D.detach().float()])
        nonfinite = self.trainer.strategy.reduce((~torch.isfinite(losses)).float(), reduce_op="sum")
        generator_bad, discriminator_bad = nonfinite.tolist()
        return generator_bad == 0, discriminator_bad == 0

    def _optimizer_step(self, optimizer: Any, loss: torch.Tensor, finite: bool) -> None:
        """Backward and step ``optimizer`` (the other networks frozen) when ``loss`` is finite.

        Under an fp16 GradScaler a non-finite loss (typically an fp16 overflow) still goes through
        backward: the scaler finds the non-finite gradients, skips the optimizer step and lowers its scale,
        which is how fp16 training recovers. Either way the weights are left untouched.
        """
        self.toggle_optimizer(optimizer)
        try:
            if finite or self._grad_scaler() is not None:
                self.manual_backward(loss)
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        finally:
            self.untoggle_optimizer(optimizer)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip here: Lightning calls this after backward and after unscaling fp16 gradients."""
        if self.hparams.gradient_clip_val is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.hparams.gradient_clip_val, gradient_clip_algorithm="norm"
            )

    def _discriminator_loss(self, net: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """0.5 * (loss(D(real), real) + loss(D(fake), fake)), plus the gradient penalty for wgangp.

        Under fp16 the penalty is scaled by the GradScaler's scale before this iteration's steps, and
        unscaled by the same value: only its underflow protection depends on the scale."""
        fake = fake.contiguous(memory_format=self.memory_format)
        loss = 0.5 * (self.gan_loss(net(real), True) + self.gan_loss(net(fake), False))
        if self.hparams.gan_mode == "wgangp" and self.hparams.wgangp_lambda > 0:
            alpha = torch.rand((real.shape[0], 1, 1, 1), generator=self.rng)
            scaler = self._grad_scaler()
            scale = 1.0 if scaler is None else float(scaler.get_scale())
            loss = loss + self.hparams.wgangp_lambda * gradient_penalty(
                net, real, fake, alpha, grad_scale=scale
            )
        return loss

    def on_train_epoch_start(self) -> None:
        self._last_step_start = None
        self._images_per_sec = None

    def _time_iteration(self, batch_size: int) -> None:
        """images/s of the previous iteration: its batch over the time from its start to this one's."""
        now = time.perf_counter()
        if self._last_step_start is not None and now > self._last_step_start:
            self._images_per_sec = self._last_batch_size / (now - self._last_step_start)
        self._last_step_start, self._last_batch_size = now, batch_size

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """One CycleGAN iteration: a generator step (D frozen) on fresh fakes, then a discriminator step
        on pooled fakes. Returns the iteration's images under ``visuals`` for the image-grid logger.

        The discriminator loss is computed before the generator step: that step changes only generator
        weights and the fakes were made before it, so the loss is the same, and one finiteness check
        covers both losses before either optimizer steps. (Cost: the discriminator loss's graph is held
        during the generator's backward pass.)"""
        hp = self.hparams
        real_A, real_B = self._images(batch)
        batch_size = real_A.shape[0]
        self._time_iteration(batch_size)
        opt_g, opt_d = self.optimizers()

        self.toggle_optimizer(opt_g)  # freezes both discriminators (requires_grad False)
        try:
            fake_B = self.netG_A(real_A)
            rec_A = self.netG_B(fake_B)
            fake_A = self.netG_B(real_B)
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
            if hp.lambda_identity > 0:
                idt_A = self.netG_A(real_B)
                idt_B = self.netG_B(real_A)
                losses["idt_A"] = F.l1_loss(idt_A.float(), real_B.float()) * hp.lambda_B * hp.lambda_identity
                losses["idt_B"] = F.l1_loss(idt_B.float(), real_A.float()) * hp.lambda_A * hp.lambda_identity
                visuals.update(idt_A=idt_A, idt_B=idt_B)
            loss_G = torch.stack(list(losses.values())).sum()
        finally:
            self.untoggle_optimizer(opt_g)

        pools_before = self._pool_snapshot()
        self.toggle_optimizer(opt_d)  # freezes both generators
        try:
            loss_D_A = self._discriminator_loss(self.netD_A, real_B, self.fake_B_pool.query(fake_B))
            loss_D_B = self._discriminator_loss(self.netD_B, real_A, self.fake_A_pool.query(fake_A))
        finally:
            self.untoggle_optimizer(opt_d)
        loss_D = loss_D_A + loss_D_B

        g_finite, d_finite = self._finite_on_all_processes(loss_G, loss_D)
        if not (g_finite and d_finite):
            self._restore_pools(pools_before)
        self._optimizer_step(opt_g, loss_G, g_finite)
        self._optimizer_step(opt_d, loss_D, d_finite)

        values = torch.stack([*losses.values(), loss_G, loss_D_A, loss_D_B]).detach().float()
        self._add_to_epoch_sums(values, g_finite, d_finite, batch_size)
        self._iteration_log = (values, g_finite, d_finite, batch_size)
        self._track_nonfinite(g_finite and d_finite, loss_G, loss_D, batch_size)
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

    def _add_to_epoch_sums(
        self, values: torch.Tensor, g_finite: bool, d_finite: bool, batch_size: int
    ) -> None:
        """Add the finite losses of an iteration, weighted by its batch size, to this epoch's sums."""
        if self._epoch_loss_sums.device != values.device:
            self._epoch_loss_sums = self._epoch_loss_sums.to(values.device)
        split = self._num_generator_losses
        for group, (finite, part) in enumerate(((g_finite, slice(0, split)), (d_finite, slice(split, None)))):
            if finite:
                self._epoch_loss_sums[part].add_(values[part], alpha=batch_size)
                self._epoch_loss_weights[group] += batch_size

    def _is_logging_step(self) -> bool:
        """Whether Lightning writes this iteration's step metrics to the loggers (its own rule: every
        ``log_every_n_steps`` iterations, when stopping, and every iteration of a ``fast_dev_run``)."""
        trainer = self.trainer
        # A private Lightning attribute (present in 2.x); if a release drops it, log every iteration.
        connector = getattr(trainer, "_logger_connector", None)
        return bool(trainer.fast_dev_run) or bool(getattr(connector, "should_update_logs", True))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log the iteration's finite losses, the learning rates and images/s at logging steps only."""
        record, self._iteration_log = self._iteration_log, None
        if record is None or not self._is_logging_step():
            return
        values, g_finite, d_finite, batch_size = record
        split = self._num_generator_losses
        metrics: dict[str, Any] = {
            f"train/{name}_step": value
            for index, (name, value) in enumerate(zip(self.loss_names, values.unbind(), strict=True))
            if (g_finite if index < split else d_finite)
        }
        opt_g, opt_d = self.optimizers()
        metrics["lr/G"] = opt_g.param_groups[0]["lr"]
        metrics["lr/D"] = opt_d.param_groups[0]["lr"]
        if self._images_per_sec is not None:
            metrics["train/images_per_sec"] = self._images_per_sec
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=batch_size)

    def _track_nonfinite(
        self, finite: bool, loss_G: torch.Tensor, loss_D: torch.Tensor, batch_size: int
    ) -> None:
        if finite:
            self.nonfinite_consecutive = 0
            return
        self.nonfinite_consecutive += 1
        self.nonfinite_total += 1
        self.log(
            "train/nonfinite_skipped",
            float(self.nonfinite_total),
            on_step=True,
            on_epoch=False,
            batch_size=batch_size,
        )
        limit = self.hparams.max_consecutive_nonfinite
        if limit is not None and self.nonfinite_consecutive >= limit:
            raise NonFiniteLossError(
                f"{self.nonfinite_consecutive} training iterations in a row had a non-finite loss "
                f"(last: G loss {float(loss_G.detach()):.4g}, D loss {float(loss_D.detach()):.4g}; "
                f"max_consecutive_nonfinite={limit}); their optimizer steps were skipped, so the weights "
                "are those of the last finite step. Try a lower lr, gradient_clip_val, or precision 32."
            )

    def _epoch_means(self) -> dict[str, torch.Tensor]:
        """This epoch's mean of each loss over all processes (weighted by batch size, finite steps only);
        losses without a finite step are left out."""
        sums = self._epoch_loss_sums.to(self.device)
        split = self._num_generator_losses
        generator_weight, discriminator_weight = self._epoch_loss_weights
        weights = torch.tensor(
            [generator_weight] * split + [discriminator_weight] * (len(self.loss_names) - split),
            dtype=sums.dtype,
            device=sums.device,
        )
        sums, weights = self.trainer.strategy.reduce(torch.stack([sums, weights]), reduce_op="sum")
        return {
            name: sums[index] / weight
            for index, (name, weight) in enumerate(zip(self.loss_names, weights.tolist(), strict=True))
            if weight > 0
        }

    def on_train_epoch_end(self) -> None:
        """Log the epoch's mean losses and step both schedulers once per epoch (plateau watches the mean
        generator loss; an epoch without a finite one counts as no improvement).

        Lightning runs this hook again for an epoch-end checkpoint on some resumes: a scheduler already
        stepped for this epoch is left alone, and the sums, reset after the first run, log nothing.
        """
        means = self._epoch_means()
        if means:
            self.log_dict(
                {f"train/{name}_epoch": value for name, value in means.items()},
                on_step=False,
                on_epoch=True,
                batch_size=1,
            )
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            if scheduler.last_epoch > self.current_epoch:
                continue  # stepped for this epoch already
            if self.hparams.lr_policy == "plateau":
                scheduler.step(float(means["G"]) if "G" in means else float("inf"))
            else:
                scheduler.step()
        self._epoch_loss_sums.zero_()
        self._epoch_loss_weights = [0.0, 0.0]

    # ------------------------------------------------------------------ evaluation
    def _log_cycle_losses(self, batch: Mapping[str, Any], stage: str) -> None:
        """Unweighted cycle-consistency L1 of both directions and their mean (``{stage}/cycle``)."""
        real_A, real_B = self._images(batch)
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
    def _process_state(self) -> dict[str, Any]:
        return {
            "rng": self.rng.get_state(),
            "fake_A_pool": self.fake_A_pool.state_dict(),
            "fake_B_pool": self.fake_B_pool.state_dict(),
            "nonfinite_consecutive": self.nonfinite_consecutive,
            "nonfinite_total": self.nonfinite_total,
            "epoch_loss_names": list(self.loss_names),
            "epoch_loss_sums": self._epoch_loss_sums.detach().cpu().clone(),
            "epoch_loss_weights": list(self._epoch_loss_weights),
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store pools, the module's RNG and counters of every process (tensors and plain types only)."""
        states = gather_from_processes(self._process_state())
        checkpoint[STATE_KEY] = {"version": _STATE_VERSION, "processes": states}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore this process's state; a process beyond the saved world size reuses a saved pool with a
        rank-derived RNG seed, so the processes do not draw alike. A version-1 checkpoint (no per-loss
        epoch sums) or one with other loss terms starts the epoch sums from zero."""
        saved = checkpoint.get(STATE_KEY)
        if saved is None:
            return
        if saved.get("version") not in (1, _STATE_VERSION):
            raise ValueError(f"checkpoint {STATE_KEY} version {saved.get('version')} is not {_STATE_VERSION}")
        processes = saved["processes"]
        rank = self.global_rank
        state = processes[rank % len(processes)]
        self.rng.set_state(state["rng"])
        if rank >= len(processes):
            self.rng.manual_seed(self._rank_seed())
        self.fake_A_pool.load_state_dict(state["fake_A_pool"])
        self.fake_B_pool.load_state_dict(state["fake_B_pool"])
        self.nonfinite_consecutive = int(state["nonfinite_consecutive"])
        self.nonfinite_total = int(state["nonfinite_total"])
        if tuple(state.get("epoch_loss_names", ())) == self.loss_names:
            self._epoch_loss_sums = state["epoch_loss_sums"].to(self._epoch_loss_sums)
            self._epoch_loss_weights = [float(weight) for weight in state["epoch_loss_weights"]]


__all__ = ["STATE_KEY", "CycleGAN", "NonFiniteLossError"]
