"""The history pool of generated images: fill phase, 0.5 swap probability, determinism, save/restore."""

import pytest
import torch

from cyclegan.model import ImagePool


def images(values, size=2):
    """A batch of constant images, image i filled with values[i], so returned images are recognizable."""
    return torch.stack([torch.full((1, size, size), float(v)) for v in values])


def labels(batch):
    return [int(image[0, 0, 0].item()) for image in batch]


def test_pool_size_zero_returns_the_input_detached_and_stores_nothing():
    pool = ImagePool(0, torch.Generator().manual_seed(0))
    batch = images([1, 2, 3]).requires_grad_()
    out = pool.query(batch * 1)  # a generator's output: part of a graph
    assert torch.equal(out, batch) and out.grad_fn is None and not out.requires_grad
    assert len(pool) == 0


def test_filling_pool_returns_and_stores_new_images():
    pool = ImagePool(3, torch.Generator().manual_seed(0))
    assert labels(pool.query(images([1, 2]))) == [1, 2]
    assert labels(pool.query(images([3]))) == [3]
    assert len(pool) == 3
    assert sorted(labels(pool.images)) == [1, 2, 3]


def test_full_pool_swaps_with_probability_one_half_and_keeps_its_size():
    pool = ImagePool(5, torch.Generator().manual_seed(123))
    pool.query(images(range(5)))
    stored_history = set(range(5))
    swapped = 0
    trials = 4000
    for step in range(trials):
        new_label = 1000 + step
        (returned,) = labels(pool.query(images([new_label])))
        if returned != new_label:
            swapped += 1
            # A swap returns an image the pool held, and the new image takes its place.
            assert returned in stored_history
            assert new_label in labels(pool.images)
            stored_history.add(new_label)
        assert len(pool) == 5
    assert abs(swapped / trials - 0.5) < 0.03


def test_choices_follow_the_reference_rule_with_the_given_generator():
    """Oracle: the reference's loop written out with the same draws (rand > 0.5 -> randint slot)."""
    seed, size = 7, 4
    pool = ImagePool(size, torch.Generator().manual_seed(seed))
    oracle_rng = torch.Generator().manual_seed(seed)
    oracle = []
    for step in range(40):
        batch_labels = [10 * step + i for i in range(3)]
        expected = []
        for label in batch_labels:
            if len(oracle) < size:
                oracle.append(label)
                expected.append(label)
            elif torch.rand((), generator=oracle_rng).item() > 0.5:
                slot = int(torch.randint(size, (), generator=oracle_rng).item())
                expected.append(oracle[slot])
                oracle[slot] = label
            else:
                expected.append(label)
        assert labels(pool.query(images(batch_labels))) == expected
    assert labels(pool.images) == oracle


def test_pool_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    pool = ImagePool(2, torch.Generator().manual_seed(0))
    for step in range(20):
        pool.query(images([step, step + 100]))
    torch.testing.assert_close(torch.rand(3), expected)


def test_state_dict_round_trip_repeats_the_same_choices():
    generator = torch.Generator().manual_seed(3)
    pool = ImagePool(4, generator)
    for step in range(10):
        pool.query(images([step, step + 50]))
    saved_pool, saved_rng = pool.state_dict(), generator.get_state()

    restored_generator = torch.Generator().manual_seed(999)
    restored = ImagePool(4, restored_generator)
    restored.load_state_dict(saved_pool)
    restored_generator.set_state(saved_rng)
    for step in range(10, 30):
        batch = images([step, step + 50])
        assert labels(pool.query(batch)) == labels(restored.query(batch))
    assert labels(pool.images) == labels(restored.images)


def test_restore_undoes_the_queries_since_the_snapshot():
    pool = ImagePool(2, torch.Generator().manual_seed(0))
    pool.query(images([1, 2]))
    snapshot = pool.snapshot()
    for step in range(10):
        pool.query(images([100 + step]))
    assert labels(pool.images) != [1, 2]
    pool.restore(snapshot)
    assert labels(pool.images) == [1, 2]


def test_state_dict_holds_cpu_tensors_and_oversized_state_is_rejected():
    pool = ImagePool(2, torch.Generator())
    pool.query(images([1, 2]))
    state = pool.state_dict()
    assert all(image.device.type == "cpu" for image in state["images"])
    with pytest.raises(ValueError, match="holds 2 images but pool_size is 1"):
        ImagePool(1, torch.Generator()).load_state_dict(state)


def test_stored_image_of_another_size_is_not_mixed_into_a_batch():
    pool = ImagePool(1, torch.Generator().manual_seed(0))
    pool.query(images([1], size=2))
    for step in range(20):
        out = pool.query(images([step + 10], size=4))
        assert out.shape == (1, 1, 4, 4)


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_invalid_pool_size(bad):
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(bad, torch.Generator())
