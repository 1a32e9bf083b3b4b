"""UnpairedImageDataModule on real image files: layout errors, bad files, determinism, ranks, fsspec
roots, worker processes and a real Lightning Trainer run."""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import fsspec
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from cyclegan.data import BadImageError, UnpairedImageDataModule
from cyclegan.data.files import PathTable
from cyclegan.data.sampling import EpochSampler

SPLITS = ("trainA", "trainB", "testA", "testB")


def jpeg_bytes(height: int, width: int, seed: int, tint: tuple[float, float, float] = (1, 1, 1)) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin((x + seed) / 5.0)], axis=-1) * np.array(tint)
    pixels = (np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def make_dataset(root: Path, counts: dict[str, int] | None = None, size: tuple[int, int] = (40, 48)) -> Path:
    """ROOT/{trainA,...} with small JPEGs; some in subfolders, some with upper-case suffixes."""
    counts = counts or {"trainA": 6, "trainB": 5, "testA": 3, "testB": 2}
    for split, count in counts.items():
        for i in range(count):
            folder = root / split / ("nested" if i % 3 == 2 else "")
            folder.mkdir(parents=True, exist_ok=True)
            suffix = ".JPG" if i % 2 else ".jpg"
            (folder / f"{split}_{i:02d}{suffix}").write_bytes(jpeg_bytes(*size, seed=hash(split) % 1000 + i))
    return root


def module(root, **options) -> UnpairedImageDataModule:
    settings = {"load_size": 36, "crop_size": 32, "num_workers": 0, "batch_size": 2}
    settings.update(options)
    return UnpairedImageDataModule(str(root), **settings)


def all_batches(loader) -> list[dict]:
    return list(loader)


# ------------------------------------------------------------------------------------------- layout
def test_cyclegan_data_stands_alone():
    code = (
        "import sys, cyclegan.data\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in "
        "(['cyclegan', 'ops'], ['cyclegan', 'nn'], ['cyclegan', 'model'], ['cyclegan', 'cli'])]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_path_table_round_trips():
    paths = ["/a/b.jpg", "/ünï/cødé 1.PNG", "", "memory://x/y.webp"]
    table = PathTable(paths)
    assert list(table) == paths and len(table) == 4 and table[-1] == paths[-1]
    with pytest.raises(IndexError):
        table[4]
    assert list(PathTable([])) == []


def test_files_are_found_recursively_sorted_and_case_insensitively(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "trainA" / "notes.txt").write_text("not an image")
    (tmp_path / "trainA" / "nested" / "deeper").mkdir()
    (tmp_path / "trainA" / "nested" / "deeper" / "extra.PnG").write_bytes(b"")
    dm = module(tmp_path)
    dm.setup("fit")
    paths = list(dm.train_dataset.domain_a.paths)
    assert len(paths) == 7  # 6 JPEGs + the .PnG, not the .txt
    assert paths == sorted(paths)
    assert any(p.endswith(".JPG") for p in paths) and any("/nested/" in p for p in paths)
    assert len(dm.train_dataset) == 7  # max(|A|, |B|) as the reference


@pytest.mark.parametrize(
    ("damage", "error", "names"),
    [
        (lambda root: root / "missing", FileNotFoundError, ["missing", "trainA"]),
        (
            lambda root: (root / "file.txt").write_text("x") and root / "file.txt",
            NotADirectoryError,
            ["file.txt"],
        ),
    ],
    ids=["missing-root", "root-is-a-file"],
)
def test_bad_root_fails_at_construction(tmp_path, damage, error, names):
    with pytest.raises(error) as caught:
        module(damage(tmp_path))
    for name in names:
        assert name in str(caught.value)


def test_missing_empty_or_file_split_fails_in_setup_naming_it(tmp_path):
    make_dataset(tmp_path, {"trainA": 2, "testA": 1, "testB": 1})
    with pytest.raises(FileNotFoundError, match=r"trainB.*does not exist.*expected ROOT/trainA"):
        module(tmp_path).setup("fit")
    (tmp_path / "trainB").mkdir()
    (tmp_path / "trainB" / "readme.md").write_text("no images here")
    with pytest.raises(ValueError, match=r"trainB.*holds no image"):
        module(tmp_path).setup("fit")
    (tmp_path / "trainB" / "readme.md").unlink()
    (tmp_path / "trainB").rmdir()
    (tmp_path / "trainB").write_text("a file")
    with pytest.raises(NotADirectoryError, match=r"trainB.*is a file"):
        module(tmp_path).setup("fit")


def test_bad_options_are_refused(tmp_path):
    make_dataset(tmp_path)
    for option, value in [("direction", "AtoC"), ("preprocess", "zoom"), ("input_nc", 4), ("batch_size", 0)]:
        with pytest.raises(ValueError, match=option):
            module(tmp_path, **{option: value})


# -------------------------------------------------------------------------------------------- batches
@pytest.mark.parametrize(("input_nc", "output_nc"), [(3, 3), (1, 3), (3, 1), (1, 1)])
def test_training_batches(tmp_path, input_nc, output_nc):
    make_dataset(tmp_path)
    dm = module(tmp_path, input_nc=input_nc, output_nc=output_nc)
    dm.setup("fit")
    batches = all_batches(dm.train_dataloader())
    assert len(batches) == 3  # max(6, 5) samples in batches of 2
    for batch in batches:
        assert batch["A"].shape[1:] == (input_nc, 32, 32) and batch["B"].shape[1:] == (output_nc, 32, 32)
        assert batch["A"].dtype == torch.float32
        for key in ("A", "B"):
            assert batch[key].min() >= -1 and batch[key].max() <= 1
        assert len(batch["A_paths"]) == len(batch["B_paths"]) == batch["A"].shape[0]
        assert all("/trainA/" in p for p in batch["A_paths"]) and all(
            "/trainB/" in p for p in batch["B_paths"]
        )


def test_direction_btoa_swaps_the_domains(tmp_path):
    make_dataset(tmp_path)
    dm = module(tmp_path, direction="BtoA", input_nc=1, output_nc=3)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert all("/trainB/" in p for p in batch["A_paths"]) and batch["A"].shape[1] == 1
    assert all("/trainA/" in p for p in batch["B_paths"]) and batch["B"].shape[1] == 3


def test_serial_batches_and_max_dataset_size(tmp_path):
    make_dataset(tmp_path)
    dm = module(tmp_path, serial_batches=True, max_dataset_size=4, batch_size=1)
    dm.setup("fit")
    batches = all_batches(dm.train_dataloader())
    assert len(batches) == 4  # the first 4 sorted files of each domain, in order, A[i] with B[i]
    assert [b["A_paths"][0] for b in batches] == list(dm.train_dataset.domain_a.paths)
    assert [b["B_paths"][0] for b in batches] == list(dm.train_dataset.domain_b.paths)
    assert len(dm.train_dataset.domain_a) == len(dm.train_dataset.domain_b) == 4


# ------------------------------------------------------------------------------- determinism and ranks
def sequence(dm: UnpairedImageDataModule) -> list[tuple]:
    return [
        (tuple(b["A_paths"]), tuple(b["B_paths"]), b["A"].sum().item(), b["B"].sum().item())
        for b in dm.train_dataloader()
    ]


def test_same_seed_same_sequence_other_seed_or_epoch_differs(tmp_path):
    make_dataset(tmp_path, {"trainA": 8, "trainB": 8})
    runs = []
    for seed in (0, 0, 1):
        dm = module(tmp_path, seed=seed)
        dm.setup("fit")
        runs.append(sequence(dm))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    dm = module(tmp_path, seed=0)
    dm.setup("fit")
    dm.set_epoch(1)
    assert sequence(dm) != runs[0]
    dm.set_epoch(0)
    assert sequence(dm) == runs[0]


def test_global_rng_state_does_not_matter(tmp_path):
    make_dataset(tmp_path)
    dm = module(tmp_path)
    dm.setup("fit")
    torch.manual_seed(1)
    np.random.seed(1)
    first = sequence(dm)
    torch.manual_seed(2)
    np.random.seed(2)
    assert sequence(dm) == first


def test_resume_from_state_dict_reproduces_the_sequence(tmp_path):
    make_dataset(tmp_path, {"trainA": 8, "trainB": 8})
    original = module(tmp_path, seed=7)
    original.setup("fit")
    original.set_epoch(3)
    expected = sequence(original)
    state = original.state_dict()
    assert state["epoch"] == 3 and state["seed"] == 7

    resumed = module(tmp_path, seed=0)  # the checkpoint's seed wins
    resumed.setup("fit")
    resumed.load_state_dict(state)
    assert resumed.epoch == 3
    assert sequence(resumed) == expected


def test_two_ranks_draw_different_b_images(tmp_path):
    make_dataset(tmp_path, {"trainA": 16, "trainB": 16})
    draws = []
    for rank in (0, 1):
        dm = module(tmp_path)
        dm.setup("fit")
        dm.train_dataset.rank = rank
        dataset = dm.train_dataset
        # the same indices on both ranks (as with use_distributed_sampler=False): B still differs
        draws.append([dataset[i]["B_paths"] for i in range(16)])
    assert draws[0] != draws[1]
    assert sum(a != b for a, b in zip(*draws)) >= 8

    # under DDP each rank's sampler yields its own shard of A, and the B draws differ too
    shards = []
    for rank in (0, 1):
        sampler = EpochSampler(dataset, dm._epoch, num_replicas=2, rank=rank, seed=0)
        shards.append(list(sampler))
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(16))


def test_lightning_keeps_the_sampler_and_sets_its_epoch(tmp_path):
    make_dataset(tmp_path, {"trainA": 8, "trainB": 8})
    dm = module(tmp_path)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)  # Lightning will not replace it
    loader.sampler.set_epoch(5)  # what Lightning calls at each epoch start
    assert dm.epoch == 5


# ---------------------------------------------------------------------------------------- bad files
def add_bad_files(root: Path) -> list[str]:
    """One of each bad kind in trainA; returns their names."""
    photo = jpeg_bytes(40, 48, seed=99)
    bad = {
        "zero.jpg": b"",
        "truncated.jpg": photo[: len(photo) // 2],
        "text.png": b"hello, I am not a picture\n" * 4,
        "bomb.png": _bomb_png(),
    }
    for name, data in bad.items():
        (root / "trainA" / name).write_bytes(data)
    return sorted(bad)


def _bomb_png() -> bytes:
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", 300_000, 300_000)  # declares 9e10 pixels
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def test_bad_files_are_skipped_counted_and_replaced(tmp_path, caplog):
    make_dataset(tmp_path, {"trainA": 4, "trainB": 4})
    bad_names = add_bad_files(tmp_path)
    dm = module(tmp_path, batch_size=1)
    dm.setup("fit")
    skipped: list[str] = []
    seen = 0
    with caplog.at_level(logging.WARNING):
        for batch in dm.train_dataloader():
            batch = dm.on_before_batch_transfer(batch, 0)
            assert "skipped" not in batch
            assert batch["A"].shape == (1, 3, 32, 32)
            assert not any(Path(p).name in bad_names for p in batch["A_paths"])
            seen += 1
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert seen == 8  # training went on: every index produced a sample
    assert dm.skipped == len(skipped) >= 4  # each bad file is met at least once per epoch
    for name in bad_names:
        assert any(name in message for message in skipped)


def test_skip_bad_images_false_raises_naming_the_file(tmp_path):
    make_dataset(tmp_path, {"trainA": 2, "trainB": 2})
    (tmp_path / "trainA" / "broken.jpg").write_bytes(b"")
    dm = module(tmp_path, skip_bad_images=False, batch_size=1)
    dm.setup("fit")
    with pytest.raises(BadImageError, match=r"broken\.jpg.*empty"):
        all_batches(dm.train_dataloader())


def test_a_domain_of_only_bad_files_stops_with_a_clear_error(tmp_path):
    make_dataset(tmp_path, {"trainB": 2})
    (tmp_path / "trainA").mkdir()
    for i in range(3):
        (tmp_path / "trainA" / f"junk{i}.jpg").write_bytes(b"junk")
    dm = module(tmp_path)
    dm.setup("fit")
    with pytest.raises(RuntimeError, match=r"unreadable images in a row in .*trainA"):
        all_batches(dm.train_dataloader())


def test_max_image_pixels_refuses_large_images(tmp_path):
    make_dataset(tmp_path, {"trainA": 3, "trainB": 3})
    (tmp_path / "trainA" / "huge.jpg").write_bytes(jpeg_bytes(400, 400, seed=1))
    dm = module(tmp_path, max_image_pixels=50_000, skip_bad_images=False)
    dm.setup("fit")
    with pytest.raises(BadImageError, match=r"huge\.jpg.*over the limit"):
        all_batches(dm.train_dataloader())


# ----------------------------------------------------------------------------- odd files end to end
def test_odd_image_modes_through_the_datamodule(tmp_path):
    pixels = np.asarray(Image.open(io.BytesIO(jpeg_bytes(30, 40, seed=3))))
    picture = Image.fromarray(pixels)
    (tmp_path / "trainA").mkdir()
    picture.convert("L").save(tmp_path / "trainA" / "gray.png")
    picture.convert("P").save(tmp_path / "trainA" / "palette.png")
    Image.fromarray(np.dstack([pixels, pixels[..., :1]])).save(tmp_path / "trainA" / "rgba.png")
    Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(tmp_path / "trainA" / "deep.png")
    picture.convert("CMYK").save(tmp_path / "trainA" / "cmyk.jpg")
    exif = picture.getexif()
    exif[0x0112] = 8
    picture.save(tmp_path / "trainA" / "rotated.jpeg", exif=exif.tobytes())
    picture.save(tmp_path / "trainA" / "plain.bmp")
    picture.save(tmp_path / "trainA" / "plain.tiff")
    picture.save(tmp_path / "trainA" / "plain.webp")
    make_dataset(tmp_path, {"trainB": 2})
    for channels in (1, 3):
        dm = module(tmp_path, input_nc=channels, batch_size=3, serial_batches=True, skip_bad_images=False)
        dm.setup("fit")
        batches = all_batches(dm.train_dataloader())
        assert sum(len(b["A_paths"]) for b in batches) == 9
        for batch in batches:
            assert batch["A"].shape[1:] == (channels, 32, 32)
            assert batch["A"].min() >= -1 and batch["A"].max() <= 1


# -------------------------------------------------------------------------------- val, test, predict
def test_validation_falls_back_to_test_split_and_prefers_val(tmp_path):
    make_dataset(tmp_path)
    dm = module(tmp_path)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert "/testA/" in batch["A_paths"][0]
    make_dataset(tmp_path, {"valA": 2, "valB": 2})
    dm = module(tmp_path)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert "/valA/" in batch["A_paths"][0] and "/valB/" in batch["B_paths"][0]


def test_no_test_split_means_no_validation(tmp_path):
    make_dataset(tmp_path, {"trainA": 2, "trainB": 2})
    dm = module(tmp_path)
    dm.setup("fit")
    assert dm.val_dataloader() == []
    with pytest.raises(FileNotFoundError, match="testA"):
        dm.setup("test")


@pytest.mark.parametrize(("test_preprocess", "shape"), [("resize", (32, 32)), ("none", (40, 48))])
def test_test_and_predict_batches_carry_source_paths(tmp_path, test_preprocess, shape):
    make_dataset(tmp_path)
    dm = module(tmp_path, test_preprocess=test_preprocess)
    dm.setup("test")
    batches = all_batches(dm.test_dataloader())
    a_paths = [p for b in batches for p in b["A_paths"]]
    b_paths = [p for b in batches for p in b["B_paths"]]
    assert sorted(set(a_paths)) == sorted(str(p) for p in (tmp_path / "testA").rglob("*") if p.is_file())
    assert len(a_paths) == 3 and len(set(b_paths)) == 2  # max(|A|, |B|) pairs, B repeats
    assert batches[0]["A"].shape[-2:] == shape
    first = all_batches(dm.test_dataloader())
    assert all(torch.equal(x["A"], y["A"]) for x, y in zip(batches, first))  # no randomness

    dm.setup("predict")
    predicted = all_batches(dm.predict_dataloader())
    assert set(predicted[0]) == {"A", "A_paths"}
    assert [p for b in predicted for p in b["A_paths"]] == list(dm.test_dataset.domain_a.paths)


def test_predict_root_and_direction(tmp_path):
    make_dataset(tmp_path / "data")
    make_dataset(tmp_path / "extra", {"inputs": 3})
    dm = module(tmp_path / "data", predict_root=str(tmp_path / "extra" / "inputs"))
    dm.setup("predict")
    paths = [p for b in dm.predict_dataloader() for p in b["A_paths"]]
    assert len(paths) == 3 and all("/extra/inputs/" in p for p in paths)
    dm = module(tmp_path / "data", direction="BtoA")
    dm.setup("predict")
    assert all("/testB/" in p for b in dm.predict_dataloader() for p in b["A_paths"])


# ------------------------------------------------------------------------------- fsspec and workers
def test_memory_filesystem_root_with_worker_processes():
    fs = fsspec.filesystem("memory")
    base = "/cyclegan-test-data"
    if fs.exists(base):
        fs.rm(base, recursive=True)
    for split in SPLITS:
        for i in range(3):
            fs.pipe_file(f"{base}/{split}/deep/img{i}.JPEG", jpeg_bytes(40, 44, seed=i))
    fs.pipe_file(f"{base}/trainA/zero.jpg", b"")
    try:
        dm = module(f"memory://{base}", num_workers=2, batch_size=2)
        dm.setup("fit")
        loader = dm.train_dataloader()
        batches = []
        for batch in loader:
            batches.append(dm.on_before_batch_transfer(batch, 0))
        assert len(batches) == 2
        assert all(p.startswith("memory://") for b in batches for p in b["A_paths"] + b["B_paths"])
        assert dm.skipped >= 1  # counted in a worker, reached the main process through the batch
        assert batches[0]["A"].shape == (2, 3, 32, 32)
        with pytest.raises(FileNotFoundError, match=r"memory://.*nothere"):
            module(f"memory://{base}/nothere")
    finally:
        fs.rm(base, recursive=True)


def test_dataloader_with_two_workers_matches_in_process_loading(tmp_path):
    make_dataset(tmp_path, {"trainA": 8, "trainB": 6})
    in_process = module(tmp_path, num_workers=0)
    in_process.setup("fit")
    workers = module(tmp_path, num_workers=2)
    workers.setup("fit")
    loader = workers.train_dataloader()
    assert loader.num_workers == 2 and loader.persistent_workers
    expected = sequence(in_process)
    assert sequence(workers) == expected  # results do not depend on which worker made a sample
    workers.set_epoch(1)  # persistent workers see the new epoch through shared memory
    in_process.set_epoch(1)
    assert sequence(workers) == sequence(in_process) != expected


# ------------------------------------------------------------------------------------ Lightning run
class TinyTranslator(pl.LightningModule):
    """A real (tiny) model: one 1x1 convolution trained to map A to B, recording what it was fed."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Conv2d(3, 3, 1)
        self.batches: list[tuple] = []

    def on_train_epoch_start(self) -> None:
        self.trainer.datamodule.set_epoch(self.current_epoch)

    def training_step(self, batch, batch_idx):
        assert set(batch) == {"A", "B", "A_paths", "B_paths"}
        self.batches.append((self.current_epoch, tuple(batch["A_paths"]), tuple(batch["B_paths"])))
        return torch.nn.functional.l1_loss(self.net(batch["A"]), batch["B"])

    def on_train_epoch_end(self) -> None:
        self.log("data/skipped", float(self.trainer.datamodule.skipped))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_trainer_fit_counts_and_logs_skipped_files(tmp_path):
    make_dataset(tmp_path / "data", {"trainA": 6, "trainB": 6})
    (tmp_path / "data" / "trainA" / "empty.jpg").write_bytes(b"")
    dm = module(tmp_path / "data", num_workers=2, batch_size=2)
    model = TinyTranslator()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=pl.loggers.CSVLogger(tmp_path / "logs"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, datamodule=dm)
    assert len(model.batches) == 8  # 7 samples -> 4 batches per epoch
    epochs = [[b for b in model.batches if b[0] == e] for e in (0, 1)]
    assert [b[1:] for b in epochs[0]] != [b[1:] for b in epochs[1]]  # new order and B draws per epoch
    assert dm.skipped >= 2  # the empty file is met once per epoch
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as metrics:
        rows = list(csv.DictReader(metrics))
    logged = [float(r["data/skipped_images"]) for r in rows if r.get("data/skipped_images")]
    assert logged and logged[-1] == dm.skipped
    assert dm.state_dict()["skipped"] == dm.skipped


def _fit(
    root: Path, logs: Path, epochs: int, ckpt_path: str | None = None
) -> tuple[TinyTranslator, pl.Trainer]:
    model = TinyTranslator()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        default_root_dir=logs,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=logs, save_last=True)],
    )
    trainer.fit(model, datamodule=module(root, num_workers=2, batch_size=2, seed=3), ckpt_path=ckpt_path)
    return model, trainer


def test_resumed_lightning_run_reproduces_the_uninterrupted_sequence(tmp_path):
    make_dataset(tmp_path / "data", {"trainA": 6, "trainB": 6})
    straight, _ = _fit(tmp_path / "data", tmp_path / "straight", epochs=3)
    _fit(tmp_path / "data", tmp_path / "cut", epochs=1)
    resumed, _ = _fit(
        tmp_path / "data", tmp_path / "cut", epochs=3, ckpt_path=str(tmp_path / "cut" / "last.ckpt")
    )
    assert [b for b in straight.batches if b[0] >= 1] == resumed.batches


class RecordingTranslator(TinyTranslator):
    """Writes what this rank was fed to a JSON file (DDP ranks run in their own processes)."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def on_train_end(self) -> None:
        record = {"rank": self.global_rank, "batches": self.batches}
        Path(self.folder, f"rank{self.global_rank}.json").write_text(json.dumps(record))


@pytest.mark.slow
def test_ddp_ranks_get_disjoint_a_shards_and_their_own_b_draws(tmp_path):
    """A real two-process DDP run on CPU (gloo), with Lightning's use_distributed_sampler on."""
    make_dataset(tmp_path / "data", {"trainA": 8, "trainB": 8})
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        use_distributed_sampler=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(RecordingTranslator(str(tmp_path)), datamodule=module(tmp_path / "data", batch_size=1))
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    a_paths = [[b[1][0] for b in record["batches"]] for record in ranks]
    b_paths = [[b[2][0] for b in record["batches"]] for record in ranks]
    assert len(a_paths[0]) == len(a_paths[1]) == 4
    assert not set(a_paths[0]) & set(a_paths[1])  # each A image on exactly one rank
    assert sorted(a_paths[0] + a_paths[1]) == sorted(
        str(p) for p in (tmp_path / "data" / "trainA").rglob("*.*")
    )
    assert b_paths[0] != b_paths[1]
