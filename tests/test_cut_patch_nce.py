"""PatchNCE: patch sampling, the projection head netF and the contrastive loss (against the reference's
formulation: positive logit first, same-image negatives with the diagonal filled with -10)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cyclegan.model import PatchProjection, patch_nce_loss, sample_patch_ids
from cyclegan.model.patch_nce import gather_patches


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def reference_formulation(query: torch.Tensor, key: torch.Tensor, temperature: float) -> torch.Tensor:
    """The reference CUT's PatchNCELoss, written out: per-patch losses reshaped to (B, P), then means."""
    batch, patches, dim = query.shape
    q, k = query.reshape(-1, dim), key.reshape(-1, dim)
    positive = (q * k).sum(dim=1, keepdim=True)
    negatives = torch.bmm(query, key.transpose(1, 2))
    negatives = negatives.masked_fill(torch.eye(patches, dtype=torch.bool)[None], -10.0).reshape(-1, patches)
    logits = torch.cat([positive, negatives], dim=1) / temperature
    losses = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long), reduction="none")
    return losses.view(batch, patches).mean(dim=1)


@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
def test_loss_equals_the_reference_formulation(temperature):
    query, key = unit(3, 16, 8, seed=1), unit(3, 16, 8, seed=2)
    loss = patch_nce_loss(query, key, temperature)
    assert loss.shape == (3,) and loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference_formulation(query, key, temperature), rtol=1e-5, atol=1e-5)


def test_temperature_scales_the_logits():
    """Orthogonal patches: the positive logit is 1/T, every negative 0: loss = log(1 + (P-1) e^(-1/T))."""
    key = torch.eye(8)[None]
    for temperature in (0.07, 0.5, 2.0):
        expected = math.log(1 + 7 * math.exp(-1 / temperature))
        assert patch_nce_loss(key, key, temperature).item() == pytest.approx(expected, rel=1e-5, abs=2e-7)


def test_the_positive_equal_to_the_query_gives_the_lowest_loss():
    query = unit(1, 32, 16, seed=3)
    best = patch_nce_loss(query, query.clone()).item()
    for seed in range(20):  # the same keys moved away from the queries, and unrelated keys
        moved = F.normalize(query + 0.3 * unit(1, 32, 16, seed=10 + seed), dim=-1)
        assert patch_nce_loss(query, moved).item() > best
        assert patch_nce_loss(query, unit(1, 32, 16, seed=100 + seed)).item() > best


def test_negatives_come_from_the_same_image_only():
    """Changing the second image's keys leaves the first image's loss unchanged."""
    query, key = unit(2, 16, 8, seed=4), unit(2, 16, 8, seed=5)
    other = key.clone()
    other[1] = unit(16, 8, seed=6)
    torch.testing.assert_close(patch_nce_loss(query, key)[0], patch_nce_loss(query, other)[0])


def test_no_gradient_flows_into_the_keys():
    query = unit(1, 8, 4, seed=7).requires_grad_(True)
    key = unit(1, 8, 4, seed=8).requires_grad_(True)
    patch_nce_loss(query, key).sum().backward()
    assert key.grad is None and torch.isfinite(query.grad).all() and query.grad.abs().sum() > 0


def test_bad_shapes_and_temperature_are_clear_errors():
    with pytest.raises(ValueError, match=r"both be \(B, P, D\)"):
        patch_nce_loss(unit(1, 8, 4), unit(1, 7, 4))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        patch_nce_loss(unit(1, 8, 4), unit(1, 8, 4), 0.0)


def test_patch_ids_are_distinct_positions_capped_at_the_map_size_and_repeatable():
    features = [torch.zeros(2, 3, 20, 20), torch.zeros(2, 5, 4, 4)]
    ids = sample_patch_ids(features, 64, torch.Generator().manual_seed(0))
    assert [len(i) for i in ids] == [64, 16]
    assert all(len(set(i.tolist())) == len(i) and i.max() < 400 for i in ids)
    assert sorted(ids[1].tolist()) == list(range(16))  # fewer positions than asked: all of them
    again = sample_patch_ids(features, 64, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(ids, again, strict=True))
    with pytest.raises(ValueError, match="num_patches must be >= 1"):
        sample_patch_ids(features, 0, torch.Generator())


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_gather_picks_the_feature_vectors_at_the_positions(memory_format):
    feature = torch.randn(2, 3, 4, 5).contiguous(memory_format=memory_format)
    ids = torch.tensor([0, 7, 19])
    gathered = gather_patches(feature, ids)
    assert gathered.shape == (2, 3, 3)
    for slot, position in enumerate(ids.tolist()):
        row, column = divmod(position, 5)
        torch.testing.assert_close(gathered[:, slot], feature[:, :, row, column])


def test_projection_gives_unit_vectors_per_layer():
    head = PatchProjection([3, 16], dim=32)
    features = [torch.randn(2, 3, 10, 10), torch.randn(2, 16, 5, 5)]
    ids = sample_patch_ids(features, 12, torch.Generator().manual_seed(1))
    projected = head(features, ids)
    assert [tuple(p.shape) for p in projected] == [(2, 12, 32), (2, 12, 32)]
    for p in projected:
        torch.testing.assert_close(p.norm(dim=-1), torch.ones(2, 12))
    with pytest.raises(ValueError, match="channels must be positive"):
        PatchProjection([])


def test_gradients_are_finite_under_bf16_autocast():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    head = PatchProjection([3, 8], dim=16)
    x, y = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        queries, keys = [x, conv(x)], [y, conv(y)]
        assert queries[1].dtype == torch.bfloat16
        ids = sample_patch_ids(keys, 64, torch.Generator().manual_seed(2))
        loss = sum(
            patch_nce_loss(q, k).mean() for q, k in zip(head(queries, ids), head(keys, ids), strict=True)
        )
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    for parameter in [*conv.parameters(), *head.parameters()]:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
