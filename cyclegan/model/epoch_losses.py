"""Per-epoch loss means that survive a resume: batch-size-weighted sums of the finite steps of each
optimizer group, kept by the module and stored in its checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch


class EpochLosses:
    """Sums of this epoch's losses, weighted by batch size, one group of loss names per optimizer.

    A group's losses are added only for iterations where that group's step was finite, so a skipped
    step does not poison the mean. ``means`` reduces the sums and weights over processes (one
    collective) and leaves out groups that had no finite step.
    """

    def __init__(self, groups: Mapping[str, Sequence[str]]) -> None:
        self.groups = {group: tuple(names) for group, names in groups.items()}
        self.names: tuple[str, ...] = tuple(name for names in self.groups.values() for name in names)
        self._spans: dict[str, slice] = {}
        start = 0
        for group, names in self.groups.items():
            self._spans[group] = slice(start, start + len(names))
            start += len(names)
        self.sums = torch.zeros(len(self.names))
        self.weights = {group: 0.0 for group in self.groups}

    def add(self, values: Mapping[str, torch.Tensor], finite: Mapping[str, bool], batch_size: int) -> None:
        """Add one iteration's ``values`` (a scalar per loss name) of the groups that were finite."""
        for group, names in self.groups.items():
            if not finite[group]:
                continue
            stacked = torch.stack([values[name].detach().float() for name in names])
            if self.sums.device != stacked.device:
                self.sums = self.sums.to(stacked.device)
            self.sums[self._spans[group]].add_(stacked, alpha=batch_size)
            self.weights[group] += batch_size

    def means(
        self, reduce: Callable[[torch.Tensor], torch.Tensor], device: torch.device
    ) -> dict[str, torch.Tensor]:
        """The epoch mean of every loss over all processes; ``reduce`` sums a tensor across them."""
        sums = self.sums.to(device)
        weights = torch.cat(
            [
                torch.full((len(names),), self.weights[group], dtype=sums.dtype, device=device)
                for group, names in self.groups.items()
            ]
        )
        sums, weights = reduce(torch.stack([sums, weights]))
        return {
            name: sums[index] / weight
            for index, (name, weight) in enumerate(zip(self.names, weights.tolist(), strict=True))
            if weight > 0
        }

    def reset(self) -> None:
        self.sums.zero_()
        self.weights = {group: 0.0 for group in self.groups}

    def state_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "sums": self.sums.detach().cpu().clone(),
            "weights": [self.weights[group] for group in self.groups],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore saved sums; sums of other loss terms (another configuration) start from zero."""
        if tuple(state.get("names", ())) != self.names:
            self.reset()
            return
        self.sums = state["sums"].to(self.sums)
        self.weights = {
            group: float(weight) for group, weight in zip(self.groups, state["weights"], strict=True)
        }
