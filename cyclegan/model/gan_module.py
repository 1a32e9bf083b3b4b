"""`GANModule`: the training machinery the GAN models share, so each model's file reads as its losses.

What it does for a model (CycleGAN, CUT, pix2pix): manual optimization with one Adam per optimizer group
("G", "D") and an epoch learning-rate schedule for each; the other group frozen while one steps; a
finiteness check of the losses on every process (one device sync) before stepping, skipping the step of a
non-finite loss and stopping after ``max_consecutive_nonfinite`` in a row; gradient clipping after fp16
unscaling; per-iteration and per-epoch loss logging (epoch means that survive a resume); images/s; the
module's own random generator (per process, checkpointed); channels_last and ``torch.compile`` of the
networks; and the per-process state in checkpoints.

Step counting: under manual optimization each optimizer step counts, so ``trainer.global_step`` grows by
the number of optimizer groups (2) per iteration and ``max_steps`` counts optimizer steps. A step skipped
for a non-finite loss does not count.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from torch import nn

from cyclegan.checkpoint_files import MODEL_KEY, STATE_KEY
from cyclegan.errors import SettingError, check_bool, check_int, check_number
from cyclegan.model.distributed import gather_from_processes
from cyclegan.model.epoch_losses import EpochLosses
from cyclegan.model.network_config import plain_container
from cyclegan.model.schedules import build_scheduler, check_schedule
from cyclegan.nn import has_batchnorm

# Device types with a fused Adam kernel (torch >= 2.6).
FUSED_ADAM_DEVICES = ("cpu", "cuda", "xpu", "mps")

# The layout version of the model's extra training state (under STATE_KEY in a checkpoint).
STATE_VERSION = 3


class NonFiniteLossError(RuntimeError):
    """Raised when ``max_consecutive_nonfinite`` iterations in a row had a non-finite loss.

    No non-finite step updated anything (the module skips it, or under fp16 the GradScaler does), so the
    weights and optimizer state are those of the last finite step and can be checkpointed.
    """


class GANModule(pl.LightningModule):
    """Base of the GAN LightningModules. A subclass builds its networks, calls `prepare_networks`, names
    its optimizer groups in `optimizer_groups` and its loss terms in ``loss_groups``, and writes a
    ``training_step`` with `start_iteration`, `frozen_except`, `step_optimizers` and `end_iteration`.

    Shared settings (every model takes them as keyword arguments): ``lr``, ``beta1``, ``beta2`` (Adam),
    ``lr_policy`` (linear, step, cosine, plateau; stepped once per epoch; plateau watches the epoch's mean
    generator loss), ``n_epochs``, ``n_epochs_decay``, ``lr_decay_iters``, ``lr_gamma``,
    ``gradient_clip_val`` (each optimizer's gradient norm, after fp16 unscaling), ``channels_last``,
    ``compile`` (True, or a dict of ``torch.compile`` arguments, applied to each network),
    ``max_consecutive_nonfinite`` (None never stops) and ``pool_seed``
    (seeds the module's own generator, offset by the process rank; None: from ``torch.initial_seed()``,
    i.e. from ``seed_everything``).
    """

    # direction ("AtoB", "BtoA") -> attribute holding the generator that translates that way
    generator_names: ClassVar[dict[str, str]] = {}
    # Image-grid layout: rows of visual names (those a training step returns under "visuals").
    grid_rows: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def __init__(
        self,
        *,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_policy: str = "linear",
        n_epochs: int = 100,
        n_epochs_decay: int = 100,
        lr_decay_iters: int = 50,
        lr_gamma: float = 0.1,
        gradient_clip_val: float | None = None,
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
        max_consecutive_nonfinite: int | None = 10,
        pool_seed: int | None = None,
    ) -> None:
        super().__init__()
        check_schedule(
            lr_policy,
            n_epochs=n_epochs,
            n_epochs_decay=n_epochs_decay,
            lr_decay_iters=lr_decay_iters,
            lr_gamma=lr_gamma,
        )
        check_number("lr", lr, above=0)
        check_number("beta1", beta1, minimum=0, below=1)
        check_number("beta2", beta2, minimum=0, below=1)
        check_number("gradient_clip_val", gradient_clip_val, above=0, optional=True)
        check_int("max_consecutive_nonfinite", max_consecutive_nonfinite, 1, optional=True)
        check_int("pool_seed", pool_seed, 0, optional=True)
        check_bool("channels_last", channels_last)
        if not isinstance(plain_container(compile), (bool, dict)):
            raise SettingError("compile", compile, "must be true, false or a dict of torch.compile arguments")
        # Records the arguments of this __init__ and of the subclass's, as plain containers (an OmegaConf
        # object in a checkpoint would not load with weights_only=True).
        self.save_hyperparameters()
        for key, value in list(self.hparams.items()):
            self.hparams[key] = plain_container(value)
        self.automatic_optimization = False
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # Randomness the module owns (pool choices, patch sampling, gradient-penalty mixing): a CPU
        # generator that is checkpointed, so the global RNG is never touched and resumes repeat the draws.
        self.rng = torch.Generator()
        self.rng.manual_seed(self._rank_seed())
        self.nonfinite_consecutive = 0
        self.nonfinite_total = 0
        self.epoch_losses = EpochLosses({})
        self._iteration_log: tuple[dict[str, torch.Tensor], dict[str, bool], int] | None = None
        self._group_losses: dict[str, torch.Tensor] = {}  # the last loss of each group, for error messages
        self._last_step_start: float | None = None
        self._last_batch_size = 0
        self._images_per_sec: float | None = None

    # ------------------------------------------------------------------ set-up
    def optimizer_groups(self) -> dict[str, list[nn.Module]]:
        """Optimizer group name ("G", "D") -> the networks one Adam optimizes, in stepping order."""
        raise NotImplementedError

    def prepare_networks(self, loss_groups: Mapping[str, Sequence[str]]) -> None:
        """Apply channels_last and compile to every network and set up the epoch loss sums of
        ``loss_groups`` (optimizer group -> loss names, the group total last)."""
        compile_args = self.hparams.compile
        for networks in self.optimizer_groups().values():
            for net in networks:
                net.to(memory_format=self.memory_format)
                if compile_args:
                    net.compile(**(compile_args if isinstance(compile_args, dict) else {}))
        self.epoch_losses = EpochLosses(loss_groups)

    @property
    def loss_names(self) -> tuple[str, ...]:
        return self.epoch_losses.names

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

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[Any]]:
        """One Adam per optimizer group and an epoch schedule for each.

        Adam runs fused (one kernel over all parameters) on the devices that have that kernel: on the CPU
        the per-tensor loop PyTorch picks by default costs 4x as much, a few percent of an iteration. Not
        with ``gradient_clip_val``: a fused Adam unscales fp16 gradients itself, after clipping would."""
        hp = self.hparams
        optimizers = []
        for networks in self.optimizer_groups().values():
            parameters = [p for net in networks for p in net.parameters()]
            fused = hp.gradient_clip_val is None and all(
                p.device.type in FUSED_ADAM_DEVICES and p.is_floating_point() for p in parameters
            )
            optimizers.append(
                torch.optim.Adam(parameters, lr=hp.lr, betas=(hp.beta1, hp.beta2), fused=fused or None)
            )
        schedule = {
            "n_epochs": hp.n_epochs,
            "n_epochs_decay": hp.n_epochs_decay,
            "lr_decay_iters": hp.lr_decay_iters,
            "lr_gamma": hp.lr_gamma,
        }
        return optimizers, [build_scheduler(opt, hp.lr_policy, **schedule) for opt in optimizers]

    def named_optimizers(self) -> dict[str, Any]:
        """The Lightning-wrapped optimizers by group name."""
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        return dict(zip(self.optimizer_groups(), optimizers, strict=True))

    # ------------------------------------------------------------------ one iteration
    def images_from(self, batch: Any, keys: Mapping[str, int]) -> list[torch.Tensor]:
        """The image tensors ``batch[key]`` (``keys``: key -> channels), checked and in the module's
        memory format; a wrong batch is a clear error naming the key and the expected shape."""
        if not isinstance(batch, Mapping) or any(key not in batch for key in keys):
            found = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            wanted = " and ".join(repr(key) for key in keys)
            raise ValueError(
                f"{type(self).__name__} expects batches as dicts with image tensors {wanted}, got {found}"
            )
        images = []
        for key, channels in keys.items():
            value = batch[key]
            if not isinstance(value, torch.Tensor) or value.dim() != 4 or value.shape[1] != channels:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(
                    f"batch[{key!r}] must be a (batch, {channels}, H, W) tensor for this model's "
                    f"generator channels, got {shape}"
                )
            images.append(value.contiguous(memory_format=self.memory_format))
        return images

    @staticmethod
    def forward_together(net: nn.Module, *images: torch.Tensor) -> list[torch.Tensor]:
        """``net`` applied to each of ``images``, as one batch where that gives the same result: images of
        one shape through a network without BatchNorm (InstanceNorm normalizes each image on its own).

        Fewer, larger calls are faster: on the CPU a batch-1 convolution of a small image takes ATen's
        slow path, and every call pays the per-layer overhead once."""
        if len(images) == 1 or len({image.shape[1:] for image in images}) > 1 or has_batchnorm(net):
            return [net(image) for image in images]
        return list(net(torch.cat(images)).split([image.shape[0] for image in images]))

    def start_iteration(self, batch_size: int) -> None:
        """Time the previous iteration: images/s is its batch over the time from its start to now."""
        now = time.perf_counter()
        if self._last_step_start is not None and now > self._last_step_start:
            self._images_per_sec = self._last_batch_size / (now - self._last_step_start)
        self._last_step_start, self._last_batch_size = now, batch_size

    @contextlib.contextmanager
    def frozen_except(self, group: str) -> Iterator[None]:
        """Inside, only ``group``'s networks have ``requires_grad`` (the others are frozen)."""
        optimizer = self.named_optimizers()[group]
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """The fp16 GradScaler of the Trainer's precision plugin (16-mixed), else None."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        return scaler if scaler is not None and scaler.is_enabled() else None

    def finite_on_all_processes(self, losses: Mapping[str, torch.Tensor]) -> dict[str, bool]:
        """Whether each loss is finite on every process: one tensor, one device sync and all-reduce."""
        stacked = torch.stack([loss.detach().float() for loss in losses.values()])
        nonfinite = self.trainer.strategy.reduce((~torch.isfinite(stacked)).float(), reduce_op="sum")
        return {name: bad == 0 for name, bad in zip(losses, nonfinite.tolist(), strict=True)}

    def step_optimizers(self, losses: Mapping[str, torch.Tensor]) -> dict[str, bool]:
        """Check every group's loss (``losses``: group -> loss) in one sync, then for each group in order
        backward and step its optimizer (the others frozen) when its loss is finite. Returns finiteness.

        Under an fp16 GradScaler a non-finite loss (typically an fp16 overflow) still goes through
        backward: the scaler finds the non-finite gradients, skips the step and lowers its scale, which is
        how fp16 training recovers. Either way the weights are left untouched.
        """
        finite = self.finite_on_all_processes(losses)
        self._group_losses.update({group: loss.detach() for group, loss in losses.items()})
        optimizers = self.named_optimizers()
        for group, loss in losses.items():
            with self.frozen_except(group):
                if finite[group] or self.grad_scaler() is not None:
                    self.manual_backward(loss)
                    optimizers[group].step()
                optimizers[group].zero_grad(set_to_none=True)
        return finite

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip here: Lightning calls this after backward and after unscaling fp16 gradients."""
        if self.hparams.gradient_clip_val is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.hparams.gradient_clip_val, gradient_clip_algorithm="norm"
            )

    def end_iteration(
        self, values: Mapping[str, torch.Tensor], finite: Mapping[str, bool], batch_size: int
    ) -> None:
        """Record an iteration: its finite losses (``values``: every loss name -> scalar) into the epoch
        sums and the step log, and the non-finite count (raising after too many in a row)."""
        values = {name: values[name].detach().float() for name in self.loss_names}
        self.epoch_losses.add(values, finite, batch_size)
        self._iteration_log = (values, dict(finite), batch_size)
        if all(finite.values()):
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
            shown = ", ".join(f"{group} loss {float(loss):.4g}" for group, loss in self._group_losses.items())
            raise NonFiniteLossError(
                f"{self.nonfinite_consecutive} training iterations in a row had a non-finite loss "
                f"(last: {shown}; max_consecutive_nonfinite={limit}); their optimizer steps were skipped, "
                "so the weights are those of the last finite step. Try a lower lr, gradient_clip_val, or "
                "precision 32."
            )

    # ------------------------------------------------------------------ logging and schedules
    def on_train_epoch_start(self) -> None:
        self._last_step_start = None
        self._images_per_sec = None

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
        values, finite, batch_size = record
        metrics: dict[str, Any] = {
            f"train/{name}_step": values[name]
            for group, names in self.epoch_losses.groups.items()
            if finite[group]
            for name in names
        }
        for group, optimizer in self.named_optimizers().items():
            metrics[f"lr/{group}"] = optimizer.param_groups[0]["lr"]
        if self._images_per_sec is not None:
            metrics["train/images_per_sec"] = self._images_per_sec
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=batch_size)

    def on_train_epoch_end(self) -> None:
        """Log the epoch's mean losses and step every scheduler once per epoch (plateau watches the mean
        generator loss "G"; an epoch without a finite one counts as no improvement).

        Lightning runs this hook again for an epoch-end checkpoint on some resumes: a scheduler already
        stepped for this epoch is left alone, and the sums, reset after the first run, log nothing.
        """
        means = self.epoch_losses.means(
            lambda tensor: self.trainer.strategy.reduce(tensor, reduce_op="sum"), self.device
        )
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
        self.epoch_losses.reset()

    # ------------------------------------------------------------------ checkpoint state
    def extra_process_state(self) -> dict[str, Any]:
        """A subclass's own per-process state (tensors and plain types), e.g. its image pools."""
        return {}

    def load_extra_process_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `extra_process_state` saved."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the module's RNG, counters, epoch sums and extra state of every process, and which model
        this is with where its generators are (tensors and plain types only)."""
        state = {
            "rng": self.rng.get_state(),
            "nonfinite_consecutive": self.nonfinite_consecutive,
            "nonfinite_total": self.nonfinite_total,
            "epoch_losses": self.epoch_losses.state_dict(),
            **self.extra_process_state(),
        }
        checkpoint[STATE_KEY] = {"version": STATE_VERSION, "processes": gather_from_processes(state)}
        checkpoint[MODEL_KEY] = {"class": type(self).__name__, "generators": dict(self.generator_names)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore this process's state; a process beyond the saved world size reuses a saved entry with a
        rank-derived RNG seed, so the processes do not draw alike. Older layouts (versions 1 and 2 of
        CycleGAN checkpoints) are read too."""
        saved = checkpoint.get(STATE_KEY)
        if saved is None:
            return
        if saved.get("version") not in (1, 2, STATE_VERSION):
            raise ValueError(f"checkpoint {STATE_KEY} version {saved.get('version')} is not {STATE_VERSION}")
        processes = saved["processes"]
        rank = self.global_rank
        state = processes[rank % len(processes)]
        self.rng.set_state(state["rng"])
        if rank >= len(processes):
            self.rng.manual_seed(self._rank_seed())
        self.nonfinite_consecutive = int(state["nonfinite_consecutive"])
        self.nonfinite_total = int(state["nonfinite_total"])
        if "epoch_losses" in state:
            self.epoch_losses.load_state_dict(state["epoch_losses"])
        elif "epoch_loss_names" in state:  # version 2
            self.epoch_losses.load_state_dict(
                {
                    "names": state["epoch_loss_names"],
                    "sums": state["epoch_loss_sums"],
                    "weights": state["epoch_loss_weights"],
                }
            )
        self.load_extra_process_state(state)
