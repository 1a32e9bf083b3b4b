"""FID / KID: fp64 reference values, identical vs different sets, the eval command, the callback."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import linalg
from test_inference_support import TinyFeatures, compose_config, trained_run, write_domain

from cyclegan.cli.evaluate import run_eval
from cyclegan.inference.evaluation import format_table
from cyclegan.inference.metrics import InceptionWeightsError, inception_weights_path, score_translations


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory)


def _images(count: int, brightness: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(count, 3, 24, 24, generator=generator) * 0.6 + brightness).clamp(-1, 1)


def _fid_fp64(real: np.ndarray, fake: np.ndarray) -> float:
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = linalg.sqrtm(cov_r @ cov_f).real
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(cov_r + cov_f - 2 * root))


def _kid_fp64(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3 over the full sets."""
    d = real.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    m = len(real)
    k_rr, k_ff, k_rf = k(real, real), k(fake, fake), k(real, fake)
    within = (k_rr.sum() - np.trace(k_rr) + k_ff.sum() - np.trace(k_ff)) / (m * (m - 1))
    return float(within - 2 * k_rf.mean())


def _features(images: torch.Tensor) -> np.ndarray:
    from cyclegan.inference.metrics import to_uint8_rgb

    return TinyFeatures()(to_uint8_rgb(images)).double().numpy()


def test_scores_match_an_fp64_reference_and_separate_identical_from_different_sets():
    real = _images(60, -0.8, seed=0)
    similar = _images(60, -0.8, seed=1)
    different = _images(60, 0.2, seed=2)
    same = score_translations(
        TinyFeatures(), [real[:30], real[30:]], [real], kid_subsets=1, kid_subset_size=60
    )
    assert abs(same.fid) < 1e-6  # the unbiased KID of a set with itself is slightly negative, not 0:
    assert same.kid_mean == pytest.approx(_kid_fp64(_features(real), _features(real)), rel=1e-6)
    assert (same.num_real, same.num_fake) == (60, 60)
    close = score_translations(TinyFeatures(), [real], [similar], kid_subsets=1, kid_subset_size=60)
    far = score_translations(TinyFeatures(), [real], [different], kid_subsets=1, kid_subset_size=60)
    for scores, fake in ((close, similar), (far, different)):
        assert scores.fid == pytest.approx(_fid_fp64(_features(real), _features(fake)), rel=1e-6, abs=1e-9)
        assert scores.kid_mean == pytest.approx(
            _kid_fp64(_features(real), _features(fake)), rel=1e-6, abs=1e-9
        )
    assert far.fid > 100 * max(close.fid, 1e-3) and far.kid_mean > 100 * max(
        abs(close.kid_mean), abs(same.kid_mean)
    )


def test_eval_command_scores_both_directions_and_writes_json(trained, tmp_path):
    output = tmp_path / "metrics.json"
    cfg = compose_config(
        "eval",
        [
            f"checkpoint={trained['checkpoint']}",
            f"data.root={trained['data']}",
            f"output={output}",
            "batch_size=3",
            "kid_subsets=10",
            "progress=false",
        ],
    )
    results = run_eval(cfg, extractor=TinyFeatures())
    assert set(results) == {"AtoB", "BtoA"}
    record = json.loads(output.read_text())
    assert (
        record["checkpoint"] == str(trained["checkpoint"]) and record["feature_extractor"] == "TinyFeatures"
    )
    for direction, scores in results.items():
        assert record["metrics"][direction]["fid"] == pytest.approx(scores.fid)
        assert scores.num_real == scores.num_fake == 4 and scores.fid > 0
    assert "AtoB" in format_table(results) and "KID" in format_table(results)


def test_image_folder_scored_against_itself_is_zero(tmp_path):
    """The folder-reading path: a folder scored against itself gives FID 0."""
    write_domain(tmp_path / "testB", 6, 20, 0)
    from cyclegan.inference.evaluation import image_batches
    from cyclegan.inference.metrics import FeatureSets

    sets = FeatureSets(TinyFeatures())
    for real in (True, False):
        for batch in image_batches(
            tmp_path / "testB", 3, batch_size=4, resize=None, max_images=None, skipped=[]
        ):
            sets.add(batch, real=real)
    assert abs(sets.scores(kid_subsets=5, kid_subset_size=6).fid) < 1e-6


def test_fid_callback_logged_scores_during_training(trained):
    metrics = trained["metrics"]
    for name in ("fid/AtoB", "kid/AtoB", "fid/BtoA", "kid/BtoA"):
        assert name in metrics and np.isfinite(float(metrics[name]))


def test_missing_inception_weights_offline_explain_the_steps(tmp_path, monkeypatch, trained):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(InceptionWeightsError) as error:
        inception_weights_path(None, download=False)
    message = str(error.value)
    assert "curl -L -o weights-inception-2015-12-05-6726825d.pth https://github.com/toshas" in message
    assert "inception_weights=" in message and str(tmp_path / "torch-home") in message
    with pytest.raises(InceptionWeightsError, match=r"nowhere\.pth does not exist"):
        inception_weights_path(tmp_path / "nowhere.pth")
    cfg = compose_config(
        "eval",
        [
            f"checkpoint={trained['checkpoint']}",
            f"data.root={trained['data']}",
            "download=false",
            f"output={tmp_path / 'm.json'}",
        ],
    )
    with pytest.raises(InceptionWeightsError, match="downloading is off"):
        run_eval(cfg)
    assert not (tmp_path / "m.json").exists()


def test_missing_split_folder_is_named(trained, tmp_path):
    cfg = compose_config(
        "eval",
        [
            f"checkpoint={trained['checkpoint']}",
            f"data.root={tmp_path}",
            "direction=AtoB",
            f"output={tmp_path / 'm.json'}",
            "progress=false",
        ],
    )
    with pytest.raises(FileNotFoundError, match="testA"):
        run_eval(cfg, extractor=TinyFeatures())


def test_fid_callback_config_composes_into_training():
    from hydra.utils import instantiate

    from cyclegan.callbacks.fid import FIDCallback

    cfg = compose_config("train", ["callbacks=[default,fid]", "callbacks.fid.every_n_epochs=5"])
    callback = instantiate(cfg.callbacks.fid)
    assert isinstance(callback, FIDCallback) and callback.every_n_epochs == 5
    assert str(callback.data_root) == str(cfg.data.root) and callback.directions == ["AtoB", "BtoA"]
    assert "fid" not in compose_config("train", []).callbacks  # off unless asked for


def test_a_corrupt_inception_weights_file_is_named(tmp_path):
    from cyclegan.inference.metrics import inception_extractor

    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"truncated download")
    with pytest.raises(InceptionWeightsError, match="not a valid FID Inception weights file"):
        inception_extractor(weights)


def test_missing_checkpoint_or_folder_is_named_before_inception_is_fetched(trained, tmp_path, monkeypatch):
    """Cheap checks first: a typo must not wait for (or fail on) the 92 MB Inception download."""
    from cyclegan.checkpoint_files import CheckpointError
    from cyclegan.cli import evaluate

    def no_inception(*args, **kwargs):
        raise AssertionError("Inception was requested before the inputs were checked")

    monkeypatch.setattr(evaluate, "inception_extractor", no_inception)
    base = [f"output={tmp_path / 'm.json'}", "progress=false"]
    missing_checkpoint = [f"checkpoint={tmp_path / 'nope.ckpt'}", f"data.root={trained['data']}"]
    with pytest.raises(CheckpointError, match=r"nope\.ckpt"):
        run_eval(compose_config("eval", [*missing_checkpoint, *base]))
    missing_folder = [f"checkpoint={trained['checkpoint']}", f"data.root={tmp_path}"]
    with pytest.raises(FileNotFoundError, match="testA"):
        run_eval(compose_config("eval", [*missing_folder, *base]))
    good = [f"checkpoint={trained['checkpoint']}", f"data.root={trained['data']}", *base]
    with pytest.raises(ValueError, match="resize must be a positive number"):
        run_eval(compose_config("eval", [*good, "resize=0"]))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        run_eval(compose_config("eval", [*good, "batch_size=0"]))
