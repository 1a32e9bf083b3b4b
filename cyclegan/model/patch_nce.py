"""PatchNCE (Park et al. 2020): patch sampling, the MLP projection head ``netF`` and the contrastive loss.

A query is a patch of the translated image's features, its positive the source image's patch at the
same position, its negatives the source's other sampled patches of the same image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def sample_patch_ids(
    features: Sequence[torch.Tensor], num_patches: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Per (B, C, H, W) feature map, ``num_patches`` distinct positions in ``H * W`` (all of them, shuffled,
    when there are fewer), drawn from the CPU ``generator``; one draw serves every image of the batch."""
    if num_patches < 1:
        raise ValueError(f"num_patches must be >= 1, got {num_patches}")
    return [
        torch.randperm(feature.shape[2] * feature.shape[3], generator=generator)[:num_patches].to(
            feature.device
        )
        for feature in features
    ]


def gather_patches(feature: torch.Tensor, patch_ids: torch.Tensor) -> torch.Tensor:
    """The (B, P, C) feature vectors of a (B, C, H, W) map at the flat positions ``patch_ids`` (P)."""
    return feature.permute(0, 2, 3, 1).flatten(1, 2)[:, patch_ids]


class PatchProjection(nn.Module):
    """``netF``: per feature layer a 2-layer MLP (Linear, ReLU, Linear) to ``dim`` channels, applied to
    sampled patches, whose outputs are L2-normalized. Built from the layers' channel counts, so its
    parameters exist (and are optimized and checkpointed) from the start."""

    def __init__(self, channels: Sequence[int], dim: int = 256) -> None:
        super().__init__()
        if not channels or any(count < 1 for count in channels) or dim < 1:
            raise ValueError(f"channels must be positive counts and dim >= 1, got {list(channels)}, {dim}")
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(count, dim), nn.ReLU(), nn.Linear(dim, dim)) for count in channels
        )

    def forward(
        self, features: Sequence[torch.Tensor], patch_ids: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """(B, P, dim) unit vectors (float32) per layer, from the (B, C, H, W) maps at ``patch_ids``."""
        return [
            F.normalize(mlp(gather_patches(feature, ids)).float(), dim=-1)
            for mlp, feature, ids in zip(self.mlps, features, patch_ids, strict=True)
        ]


def patch_nce_loss(query: torch.Tensor, key: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """PatchNCE of each image: cross-entropy of softmax(query_i . key_j / temperature) over the image's
    keys j, the target being j = i (the same position). ``query`` and ``key``: (B, P, D) unit vectors;
    no gradient flows into ``key`` (as in the reference). Returns the (B,) per-image means over patches.

    Computed in float32 outside autocast: with temperature 0.07 the logits reach ~14, where bf16's
    precision would blur the softmax. (The reference fills the diagonal of its negatives with -10, a
    term of weight exp(-10 / 0.07) ~ 1e-62: this is the same loss without it.)
    """
    if query.shape != key.shape or query.dim() != 3:
        raise ValueError(
            f"query and key must both be (B, P, D), got {tuple(query.shape)}, {tuple(key.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    batch, patches, _ = query.shape
    with torch.autocast(query.device.type, enabled=False):
        logits = torch.bmm(query.float(), key.detach().float().transpose(1, 2)) / temperature
        target = torch.arange(patches, device=query.device).repeat(batch)
        losses = F.cross_entropy(logits.flatten(0, 1), target, reduction="none")
    return losses.view(batch, patches).mean(dim=1)
