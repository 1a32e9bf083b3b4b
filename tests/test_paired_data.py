"""PairedImageDataModule on real image files: the aligned format and paired folders, format detection,
one crop and flip for both halves, direction, unmatched and bad files, resume, ranks, fsspec roots and
worker processes."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.data import PairedImageDataModule
from cyclegan.data.sampling import EpochSampler


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random RGB image with noise (so crops and flips all differ)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin((x + 3 * seed) / 4.0)], axis=-1)
    return (np.clip(base + rng.normal(0, 0.08, base.shape), 0, 1) * 255).astype(np.uint8)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def make_aligned(root: Path, counts: dict[str, int] | None = None, size: int = 40) -> Path:
    """ROOT/{train,test}/ of PNGs holding A | B side by side, B = 255 - A (an exact, checkable pairing)."""
    for split, count in (counts or {"train": 6, "test": 3}).items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image_a = photo(size, size, seed=100 * len(split) + index)
            (root / split / f"{split}_{index:02d}.png").write_bytes(
                png(np.concatenate([image_a, 255 - image_a], 1))
            )
    return root


def make_folders(root: Path, names: list[str], split: str = "train", size: int = 40) -> Path:
    """ROOT/{split}A/NAME.png with ROOT/{split}B/NAME.png holding 255 - A."""
    for index, name in enumerate(names):
        image_a = photo(size, size, seed=index)
        for letter, pixels in (("A", image_a), ("B", 255 - image_a)):
            path = root / f"{split}{letter}" / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png(pixels))
    return root


def module(root, **options) -> PairedImageDataModule:
    settings = {"load_size": 36, "crop_size": 32, "num_workers": 0, "batch_size": 2}
    settings.update(options)
    return PairedImageDataModule(str(root), **settings)


def batches(dm: PairedImageDataModule, stage: str = "fit") -> list[dict]:
    dm.setup(stage)
    loader = {"fit": dm.train_dataloader, "validate": dm.val_dataloader, "test": dm.test_dataloader}[stage]()
    return [dm.on_before_batch_transfer(batch, 0) for batch in loader]


def sequence(dm: PairedImageDataModule) -> list[tuple]:
    return [(tuple(b["A_paths"]), b["A"].sum().item(), b["B"].sum().item()) for b in dm.train_dataloader()]


# ------------------------------------------------------------------------------------------- aligned
def test_aligned_images_split_at_the_middle_into_a_and_b(tmp_path):
    make_aligned(tmp_path)
    dm = module(tmp_path, preprocess="crop", load_size=40, crop_size=40, flip=False, batch_size=1)
    assert dm.format == "aligned"
    found = batches(dm)
    assert len(found) == 6
    for batch in found:
        assert batch["A"].shape == batch["B"].shape == (1, 3, 40, 40)
        assert batch["A_paths"] == batch["B_paths"] and "/train/" in batch["A_paths"][0]
        source = np.array(Image.open(batch["A_paths"][0]))
        expected_a = torch.from_numpy(source[:, :40]).permute(2, 0, 1).float() / 127.5 - 1
        torch.testing.assert_close(batch["A"][0], expected_a)
        torch.testing.assert_close(batch["B"][0], -batch["A"][0])  # B = 255 - A


def test_direction_btoa_swaps_the_halves(tmp_path):
    make_aligned(tmp_path)
    options = {"preprocess": "crop", "load_size": 40, "crop_size": 40, "flip": False, "batch_size": 1}
    forward = batches(module(tmp_path, **options))
    backward = batches(module(tmp_path, direction="BtoA", **options))
    for ab, ba in zip(forward, backward, strict=True):
        assert torch.equal(ab["A"], ba["B"]) and torch.equal(ab["B"], ba["A"])


@pytest.mark.parametrize(
    ("preprocess", "load_size", "crop_size"),
    [("crop", 40, 24), ("resize_and_crop", 48, 32), ("scale_width_and_crop", 44, 28)],
)
def test_one_crop_and_flip_for_both_halves(tmp_path, preprocess, load_size, crop_size):
    """B = 255 - A before the transform, so B = -A after it exactly when both got the same crop and flip;
    across samples the crops and flips vary."""
    make_aligned(tmp_path, {"train": 4}, size=40)
    dm = module(tmp_path, preprocess=preprocess, load_size=load_size, crop_size=crop_size, batch_size=1)
    dm.setup("fit")
    seen = set()
    for epoch in range(6):
        dm.set_epoch(epoch)
        for index in range(4):
            item = dm.train_dataset[index]
            # float rounding for crops of the original pixels; resizing rounds each half to uint8 on its own
            tolerance = 1e-6 if preprocess == "crop" else 2.5 / 127.5
            torch.testing.assert_close(item["B"], -item["A"], atol=tolerance, rtol=0)
            seen.add(round(item["A"].sum().item(), 3))
    assert len(seen) > 12  # crops and flips differ between samples and epochs


def test_odd_widths_split_into_equal_halves_and_grayscale_channels(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "odd.png").write_bytes(png(photo(30, 61, seed=1)))
    dm = module(tmp_path, preprocess="none", input_nc=1, output_nc=3, batch_size=1, flip=False)
    (batch,) = batches(dm)
    assert batch["A"].shape == (1, 1, 32, 32) and batch["B"].shape == (1, 3, 32, 32)


def test_validation_uses_val_then_test_and_test_has_no_randomness(tmp_path):
    make_aligned(tmp_path, {"train": 2, "test": 3})
    dm = module(tmp_path, batch_size=1)
    dm.setup("fit")
    assert len(dm.val_dataset) == 3
    first = [b["A"] for b in batches(module(tmp_path, batch_size=1), "test")]
    again = [b["A"] for b in batches(module(tmp_path, batch_size=1), "test")]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True)) and first[0].shape[-1] == 32
    make_aligned(tmp_path, {"val": 1})
    dm = module(tmp_path)
    dm.setup("validate")
    assert len(dm.val_dataset) == 1
    dm.setup("predict")
    predicted = next(iter(dm.predict_dataloader()))
    assert all("/test/" in path for path in predicted["A_paths"])


# ------------------------------------------------------------------------------------------ folders
def test_paired_folders_match_by_relative_path_and_list_the_unmatched(tmp_path, caplog):
    make_folders(tmp_path, ["a", "b", "deep/c"])
    make_folders(tmp_path, ["only_in_a"])  # then its B file is removed below
    (tmp_path / "trainB" / "only_in_a.png").unlink()
    (tmp_path / "trainB" / "only_in_b.png").write_bytes(png(photo(40, 40, seed=9)))
    # x.png pairs with x.jpg (extension aside)
    Image.fromarray(photo(40, 40, seed=5)).save(tmp_path / "trainA" / "jpeg_pair.jpg", quality=95)
    Image.fromarray(photo(40, 40, seed=5)).save(tmp_path / "trainB" / "jpeg_pair.png")
    dm = module(tmp_path, batch_size=1, preprocess="crop", load_size=40, crop_size=40, flip=False)
    assert dm.format == "folders"
    with caplog.at_level(logging.WARNING, logger="cyclegan.data.sources"):
        found = batches(dm)
    names = sorted(Path(b["A_paths"][0]).relative_to(tmp_path / "trainA").as_posix() for b in found)
    assert names == ["a.png", "b.png", "deep/c.png", "jpeg_pair.jpg"]
    for batch in found:
        assert Path(batch["A_paths"][0]).stem == Path(batch["B_paths"][0]).stem
        if "jpeg_pair" not in batch["A_paths"][0]:
            torch.testing.assert_close(batch["B"], -batch["A"])
    warning = next(
        record.getMessage() for record in caplog.records if "without a partner" in record.getMessage()
    )
    assert "skipping 2 file(s)" in warning and "only_in_a.png" in warning and "only_in_b.png" in warning


def test_folders_direction_btoa_and_different_sizes(tmp_path):
    make_folders(tmp_path, ["x", "y"])
    Image.fromarray(photo(80, 60, seed=3)).save(tmp_path / "trainB" / "y.png")  # B twice as large as A
    dm = module(tmp_path, direction="BtoA", batch_size=1, preprocess="none", flip=False)
    found = batches(dm)
    assert all("/trainB/" in b["A_paths"][0] and "/trainA/" in b["B_paths"][0] for b in found)
    assert all(b["A"].shape == b["B"].shape for b in found)  # B is resized to A's size


def test_no_pair_at_all_is_a_clear_error(tmp_path):
    make_folders(tmp_path, ["a"])
    (tmp_path / "trainB" / "a.png").rename(tmp_path / "trainB" / "other.png")
    dm = module(tmp_path)
    with pytest.raises(ValueError, match=r"trainA.*has a partner.*trainB"):
        dm.setup("fit")


# ------------------------------------------------------------------------------------------- format
def test_format_detection_and_errors(tmp_path):
    make_aligned(tmp_path / "aligned")
    make_folders(tmp_path / "folders", ["a"])
    assert module(tmp_path / "aligned").format == "aligned"
    assert module(tmp_path / "folders").format == "folders"
    assert module(tmp_path / "folders", format="folders").format == "folders"
    make_folders(tmp_path / "aligned", ["a"])
    with pytest.raises(ValueError, match=r"both aligned splits .* set format"):
        module(tmp_path / "aligned")
    assert module(tmp_path / "aligned", format="aligned").format == "aligned"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no paired data; expected the aligned layout"):
        module(tmp_path / "empty")
    with pytest.raises(ValueError, match="format must be one of"):
        module(tmp_path / "folders", format="pairs")
    with pytest.raises(
        FileNotFoundError, match=r"split folder .*/train' does not exist; expected the aligned"
    ):
        module(tmp_path / "folders", format="aligned").setup("fit")


# ---------------------------------------------------------------------------------------- bad files
def test_bad_files_replace_their_pair_and_are_counted(tmp_path, caplog):
    make_aligned(tmp_path, {"train": 4})
    (tmp_path / "train" / "train_01.png").write_bytes(b"not an image")
    (tmp_path / "train" / "empty.png").write_bytes(b"")
    (tmp_path / "train" / "thin.png").write_bytes(png(photo(20, 1, seed=2)))  # no halves to split
    dm = module(tmp_path, batch_size=1)
    with caplog.at_level(logging.WARNING):
        found = batches(dm)
    assert len(found) == 6 and dm.skipped >= 3
    assert all(Path(b["A_paths"][0]).stem not in ("train_01", "empty", "thin") for b in found)
    assert "train_01.png" in caplog.text and "empty.png" in caplog.text
    assert "thin.png': is 1 pixel wide; an aligned image holds A and B side by side" in caplog.text
    torch.testing.assert_close(found[0]["B"], -found[0]["A"], atol=2 / 127.5, rtol=0)

    with pytest.raises(Exception, match=r"bad image .*(train_01|empty)\.png"):
        batches(module(tmp_path, batch_size=1, skip_bad_images=False))


def test_a_bad_b_file_in_folders_replaces_the_pair(tmp_path):
    make_folders(tmp_path, ["a", "b", "c"])
    (tmp_path / "trainB" / "b.png").write_bytes(b"\x89PNG broken")
    dm = module(tmp_path, batch_size=1, preprocess="crop", load_size=40, crop_size=40)
    found = batches(dm)
    assert dm.skipped >= 1
    for batch in found:
        assert Path(batch["A_paths"][0]).stem == Path(batch["B_paths"][0]).stem != "b"
        torch.testing.assert_close(batch["B"], -batch["A"])


# -------------------------------------------------------------------------- determinism and resume
def test_resume_from_state_dict_reproduces_the_sequence_and_ranks_shard(tmp_path):
    make_aligned(tmp_path, {"train": 8})
    original = module(tmp_path, seed=7)
    original.setup("fit")
    original.set_epoch(3)
    expected = sequence(original)
    torch.manual_seed(123)  # the global RNG plays no part
    resumed = module(tmp_path, seed=0)
    resumed.setup("fit")
    resumed.load_state_dict(original.state_dict())
    assert sequence(resumed) == expected
    resumed.set_epoch(4)
    assert sequence(resumed) != expected

    shards = [
        list(EpochSampler(resumed.train_dataset, resumed._epoch, num_replicas=2, rank=rank, seed=0))
        for rank in (0, 1)
    ]
    assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == list(range(8))


def test_memory_filesystem_root_with_worker_processes():
    fs = fsspec.filesystem("memory")
    base = "/cyclegan-paired-test"
    if fs.exists(base):
        fs.rm(base, recursive=True)
    for index in range(4):
        image_a = photo(40, 40, seed=index)
        fs.pipe_file(f"{base}/train/deep/{index}.png", png(np.concatenate([image_a, 255 - image_a], 1)))
    fs.pipe_file(f"{base}/train/zero.png", b"")
    try:
        in_process = module(f"memory://{base}", num_workers=0)
        workers = module(f"memory://{base}", num_workers=2)
        found = batches(workers)
        assert len(found) == 3 and workers.skipped >= 1
        assert all(path.startswith("memory://") for b in found for path in b["A_paths"])
        in_process.setup("fit")
        workers.skipped = in_process.skipped = 0
        assert sequence(in_process) == sequence(workers)
    finally:
        fs.rm(base, recursive=True)
