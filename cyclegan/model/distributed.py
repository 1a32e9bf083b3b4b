"""Per-process state in checkpoints: every process contributes its own entry (pools, RNGs)."""

from __future__ import annotations

from typing import Any

import torch


def gather_from_processes(state: Any) -> list[Any]:
    """``state`` of every process in rank order (just ``[state]`` outside a multi-process run).

    The state is computed once by the caller and sent with ``all_gather_object``, so each process's
    entry survives in a checkpoint that rank 0 writes.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        if world > 1:
            states: list[Any] = [None] * world
            torch.distributed.all_gather_object(states, state)
            return states
    return [state]
