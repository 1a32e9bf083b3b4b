"""Reproducible randomness: per-sample generators and an epoch-aware sampler.

Every random choice a sample needs (which B image, crop offsets, flips, replacements for bad files) comes
from a torch.Generator seeded by a hash of (seed, epoch, rank, sample index). No global RNG is read, so
a sample's content does not depend on which worker made it, how many workers there are, or what ran
before; a resumed run that restores (seed, epoch) draws exactly the same sequence. Different ranks and
different indices (hence different workers) draw independently.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, DistributedSampler


def sample_seed(seed: int, epoch: int, rank: int, index: int, stream: int = 0) -> int:
    """A well-mixed 63-bit seed for one sample; `stream` separates independent uses of the same sample."""
    packed = struct.pack("<5q", seed, epoch, rank, index, stream)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little") >> 1


def sample_generator(seed: int, epoch: int, rank: int, index: int, stream: int = 0) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(sample_seed(seed, epoch, rank, index, stream))
    return generator


class SharedEpoch:
    """An epoch number in shared memory, so forked or persistent DataLoader workers see set_epoch()."""

    def __init__(self, epoch: int = 0) -> None:
        self._cell = torch.full((), int(epoch), dtype=torch.int64).share_memory_()

    @property
    def value(self) -> int:
        return int(self._cell)

    def set(self, epoch: int) -> None:
        self._cell.fill_(int(epoch))


class EpochSampler(DistributedSampler):
    """The training sampler: shards A indices over ranks (a DistributedSampler, so Lightning keeps it under
    DDP with or without `use_distributed_sampler`) and shuffles per (seed, epoch).

    set_epoch(), which Lightning calls before each training epoch, also updates the dataset's shared epoch
    so per-sample draws change with the epoch.
    """

    def __init__(
        self,
        dataset: Dataset,
        epoch: SharedEpoch,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.shared_epoch = epoch
        self.epoch = epoch.value

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.shared_epoch.set(epoch)

    def __iter__(self) -> Iterator[int]:
        self.epoch = self.shared_epoch.value  # the datamodule's set_epoch may have moved it since
        return super().__iter__()
