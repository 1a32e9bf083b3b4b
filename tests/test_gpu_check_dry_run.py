"""The Python parts of the GPU check (benchmarks/gpu_check.sh, issue 12) on the CPU: the dry runs of
benchmarks/train_curve.py and benchmarks/train_step.py write their JSON, and the loss-curve criterion
decides as its docstring states."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(*args: str) -> subprocess.CompletedProcess:
    # One intra-op thread: on a loaded 2-core machine OpenMP's spinning threads make tiny convolutions
    # ten times slower.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_train_curve_dry_run_writes_both_curves_and_the_comparison(tmp_path):
    output, profile = tmp_path / "curve.json", tmp_path / "profile.txt"
    result = run_script(
        str(BENCHMARKS / "train_curve.py"),
        "--dry-run",
        "--iterations",
        "10",
        "--no-compile",  # inductor's C++ build would take minutes here; the GPU run compiles
        "--output",
        str(output),
        "--profile-table",
        str(profile),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["mode"].startswith("dry run") and report["iterations"] == 10
    runs = report["runs"]
    assert list(runs) == ["fp32_seed0", "fast_seed0", "fp32_seed1"]
    assert runs["fast_seed0"]["setting"]["precision"] == "bf16-mixed"
    assert runs["fp32_seed0"]["setting"]["precision"] == "32-true"
    for run in runs.values():
        assert run["nonfinite_skipped"] == 0
        for name in ("G", "D_A", "D_B", "cycle_A", "cycle_B", "idt_A", "idt_B"):
            assert len(run["losses"][name]) == 10
            assert all(math.isfinite(value) for value in run["losses"][name])
    # same seed: the first iteration sees the same weights and images in both precisions
    first_fp32, first_bf16 = runs["fp32_seed0"]["losses"]["G"][0], runs["fast_seed0"]["losses"]["G"][0]
    assert first_bf16 == pytest.approx(first_fp32, rel=0.05)
    comparison = report["comparison"]
    assert set(comparison["losses"]) == set(runs["fp32_seed0"]["losses"])
    assert isinstance(comparison["within_noise"], bool) and "fp32_seed1" in comparison["criterion"]
    tables = profile.read_text()
    assert "== fp32_seed0 ==" in tables and "== fast_seed0 ==" in tables and "aten::" in tables


@pytest.mark.slow
def test_train_step_dry_run_writes_each_run_with_the_reference_networks(tmp_path):
    output = tmp_path / "step.json"
    result = run_script(
        str(BENCHMARKS / "train_step.py"),
        "--dry-run",
        "--runs",
        "reference@8,bf16_eager@8",
        "--output",
        str(output),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert [(run["setting"]["name"], run["batch_size"]) for run in report["runs"]] == [
        ("reference", 2),  # a dry run's batch 8 is 2
        ("bf16_eager", 2),
    ]
    assert all(run["images_per_s"] > 0 for run in report["runs"]) and report["errors"] == []
    assert report["summary"]["batch_2"]["best_setting"] in ("reference", "bf16_eager")


def test_train_step_refuses_an_unknown_run(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from train_step import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--dry-run", "--runs", "fastest@3"])
    assert exit_info.value.code == 2
    assert "--runs: unknown ['fastest@3']" in capsys.readouterr().err


def curve_run(values: list[float]) -> dict:
    return {"nonfinite_skipped": 0, "losses": {name: values for name in ("G", "D_A", "D_B")}}


def test_curve_criterion_compares_the_settings_gap_with_the_seed_gap(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from train_curve import compare

    fp32 = [1.0] * 20
    other_seed = [1.2] * 20  # gap 0.2 in every window
    close = compare(
        {
            "fp32_seed0": curve_run(fp32),
            "fast_seed0": curve_run([1.1] * 20),
            "fp32_seed1": curve_run(other_seed),
        },
        windows=10,
    )
    assert close["within_noise"] is True
    assert close["losses"]["G"] == {"gap_fast_vs_fp32": 0.1, "gap_fp32_seed1_vs_seed0": 0.2, "ratio": 0.5}
    far = compare(
        {
            "fp32_seed0": curve_run(fp32),
            "fast_seed0": curve_run([1.5] * 20),
            "fp32_seed1": curve_run(other_seed),
        },
        windows=10,
    )
    assert far["within_noise"] is False
    diverged = curve_run([1.1] * 20) | {"nonfinite_skipped": 1}
    assert (
        compare(
            {"fp32_seed0": curve_run(fp32), "fast_seed0": diverged, "fp32_seed1": curve_run(other_seed)},
            windows=10,
        )["within_noise"]
        is False
    )
