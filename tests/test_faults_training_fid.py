"""A hostile FID Inception weights file (issue 15, item 1): a pickle whose ``__reduce__`` runs a command,
handed to cyclegan-eval, put in the torch hub cache, or given to the training FID callback. It is refused
by its SHA-256 before anything in it is unpickled, and the command never runs."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
from pathlib import Path

import pytest
import torch
from test_inference_support import trained_run
from test_train_cli import REPO, TINY, make_unpaired_dataset, run_train

from cyclegan.inference import metrics
from cyclegan.inference.metrics import (
    INCEPTION_FILE,
    InceptionWeightsError,
    inception_extractor,
)

EVAL = REPO / ".venv" / "bin" / "cyclegan-eval"


class RunsCommand:
    """Unpickling this runs ``touch MARKER``: what a hostile weights file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_files(folder: Path, marker: Path) -> list[Path]:
    """The same payload as a plain pickle (torch's legacy format) and inside a torch.save zip archive."""
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / "plain-pickle.pth"
    plain.write_bytes(pickle.dumps({"Conv2d_1a_3x3.conv.weight": RunsCommand(marker)}))
    archive = folder / "zip-archive.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": RunsCommand(marker)}, archive)
    return [plain, archive]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory)


def test_hostile_weights_file_is_refused_before_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    for hostile in hostile_files(tmp_path / "files", marker):
        with pytest.raises(InceptionWeightsError) as refused:
            inception_extractor(hostile)
        message = str(refused.value)
        assert "\n" not in message and str(hostile) in message and "SHA-256" in message
        assert not marker.exists()


def test_hostile_file_in_the_torch_hub_cache_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    marker = tmp_path / "code-ran"
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / INCEPTION_FILE
    for hostile in hostile_files(tmp_path / "files", marker):
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(hostile.read_bytes())
        with pytest.raises(InceptionWeightsError, match=f"{cached} is not a valid FID Inception weights"):
            inception_extractor(None, download=False)
        assert not marker.exists()


def test_cyclegan_eval_refuses_a_hostile_weights_file_with_one_line(trained, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    hostile = hostile_files(tmp_path / "files", marker)[0]
    result = subprocess.run(
        [
            str(EVAL),
            f"checkpoint={trained['checkpoint']}",
            f"data.root={trained['data']}",
            f"inception_weights={hostile}",
            f"output={tmp_path / 'metrics.json'}",
            "progress=false",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("cyclegan-eval: error: ") and str(hostile) in line and "SHA-256" in line
    assert not marker.exists() and not (tmp_path / "metrics.json").exists()


def test_training_with_fid_refuses_a_hostile_weights_file_at_start(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    marker = tmp_path / "code-ran"
    hostile = hostile_files(tmp_path / "files", marker)[1]
    dataset = make_unpaired_dataset(tmp_path / "data")
    out = tmp_path / "run"
    args = [
        *TINY,
        "data=folder",
        f"data.root={dataset}",
        "data.num_workers=0",
        "logger=csv",
        "trainer.max_steps=4",
        "callbacks=[default,fid]",
        f"callbacks.fid.inception_weights={hostile}",
        "callbacks.fid.every_n_epochs=1",
        f"hydra.run.dir={out}",
    ]
    assert run_train(args, monkeypatch) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and str(hostile) in errors[0] and "SHA-256" in errors[0], errors
    assert not marker.exists()
    assert not (out / "checkpoints").exists()  # refused at start, before any training


@pytest.fixture()
def stand_in_weights(tmp_path: Path, monkeypatch) -> Path:
    """A stand-in for the published 92 MB file, which tests cannot download: torch-fidelity's Inception
    with random weights, saved as a state dict, and its SHA-256 made the expected one."""
    from torch_fidelity import feature_extractor_inceptionv3 as fidelity

    with monkeypatch.context() as build:  # build the network without fetching the real weights
        build.setattr(fidelity, "load_state_dict_from_url", lambda *args, **kwargs: None)
        build.setattr(fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        torch.manual_seed(0)
        network = fidelity.FeatureExtractorInceptionV3("stand-in", ["2048"])
    path = tmp_path / INCEPTION_FILE
    torch.save(network.state_dict(), path)
    monkeypatch.setattr(metrics, "INCEPTION_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    return path


def test_weights_with_the_published_hash_load_through_weights_only(stand_in_weights: Path) -> None:
    extractor = inception_extractor(stand_in_weights)
    saved = torch.load(stand_in_weights, weights_only=True)
    loaded = extractor.state_dict()
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[name], saved[name]) for name in saved)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert extractor(images).shape == (2, 2048)


def test_a_hostile_file_with_the_expected_hash_still_runs_no_code(tmp_path: Path, monkeypatch) -> None:
    """Defence in depth: even a file that passed the hash check is read with weights_only=True."""
    marker = tmp_path / "code-ran"
    for hostile in hostile_files(tmp_path / "files", marker):
        monkeypatch.setattr(metrics, "INCEPTION_SHA256", hashlib.sha256(hostile.read_bytes()).hexdigest())
        with pytest.raises(InceptionWeightsError, match="not a valid FID Inception weights file"):
            inception_extractor(hostile)
        assert not marker.exists()
