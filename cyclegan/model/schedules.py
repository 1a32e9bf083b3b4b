"""Epoch-based learning-rate schedules of CycleGAN: linear, step, cosine and plateau."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, ReduceLROnPlateau, StepLR

from cyclegan.errors import SettingError, check_choice, check_int, check_number

LR_POLICIES = ("linear", "step", "cosine", "plateau")

# The reference's --epoch_count (the number the first epoch carries); resuming restores the scheduler's
# own state instead of shifting this number.
_FIRST_EPOCH_NUMBER = 1


def linear_decay_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """LR multiplier after ``epoch`` completed epochs: 1 for ``n_epochs``, then linear towards 0.

    The reference formula: 1 - max(0, epoch + epoch_count - n_epochs) / (n_epochs_decay + 1), epoch_count 1.
    """
    return 1.0 - max(0, epoch + _FIRST_EPOCH_NUMBER - n_epochs) / float(n_epochs_decay + 1)


def check_schedule(
    lr_policy: str, *, n_epochs: int, n_epochs_decay: int, lr_decay_iters: int, lr_gamma: float
) -> None:
    """Raise a `SettingError` for an unknown policy or settings the chosen policy cannot use."""
    check_choice("lr_policy", lr_policy, LR_POLICIES, what="schedule")
    check_int("n_epochs", n_epochs, 0)
    check_int("n_epochs_decay", n_epochs_decay, 0)
    if lr_policy == "cosine" and n_epochs + n_epochs_decay < 1:
        raise SettingError(
            "n_epochs_decay",
            n_epochs_decay,
            "with {n_epochs} leaves lr_policy 'cosine' no epoch to anneal over",
            related={"n_epochs": n_epochs},
        )
    if lr_policy == "step":
        check_int("lr_decay_iters", lr_decay_iters, 1)
    check_number("lr_gamma", lr_gamma, above=0)


def build_scheduler(
    optimizer: Optimizer,
    lr_policy: str,
    *,
    n_epochs: int,
    n_epochs_decay: int,
    lr_decay_iters: int,
    lr_gamma: float,
) -> LRScheduler | ReduceLROnPlateau:
    """A scheduler to be stepped once per epoch (``plateau`` with the epoch's mean generator loss).

    ``step`` multiplies the LR by ``lr_gamma`` every ``lr_decay_iters`` epochs; ``plateau`` multiplies it
    by 0.2 after 5 epochs without a 1% improvement (the reference's settings); ``cosine`` anneals to 0
    over the whole run, ``n_epochs + n_epochs_decay`` epochs (the reference used ``n_epochs``, which
    makes the LR climb back up during the decay epochs).
    """
    check_schedule(
        lr_policy,
        n_epochs=n_epochs,
        n_epochs_decay=n_epochs_decay,
        lr_decay_iters=lr_decay_iters,
        lr_gamma=lr_gamma,
    )
    if lr_policy == "linear":
        return LambdaLR(optimizer, lambda epoch: linear_decay_factor(epoch, n_epochs, n_epochs_decay))
    if lr_policy == "step":
        return StepLR(optimizer, step_size=lr_decay_iters, gamma=lr_gamma)
    if lr_policy == "cosine":
        return CosineAnnealingLR(optimizer, T_max=n_epochs + n_epochs_decay, eta_min=0.0)
    return ReduceLROnPlateau(optimizer, mode="min", factor=0.2, threshold=0.01, patience=5)
