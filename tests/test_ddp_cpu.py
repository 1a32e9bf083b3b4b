"""DDP on two CPU processes (gloo, trainer=ddp_cpu) through the real CLI: training completes, both ranks
hold the same weights after every iteration, their shards of domain A are disjoint and cover it, their
image pools draw differently from one pool_seed, and the run folder gets one set of checkpoints, logs and
image grids (rank 0's), the checkpoint holding each process's own state.

`RankAgreement` is loaded by the training processes (PYTHONPATH=tests) through a `+callbacks.` override.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from test_train_cli import TINY, make_unpaired_dataset, run_train_subprocess

N_A = 8


class RankAgreement(pl.Callback):
    """At the start, gather every rank's pool generator state (as a digest); after each iteration, every
    rank's parameter checksum and the A files it trained on; rank 0 writes them to ``report`` at the end."""

    def __init__(self, report: str) -> None:
        self.report = report
        self.pool_rng_at_start: list[str] = []
        self.checksums: list[list[float]] = []
        self.a_paths: list[list[list[str]]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        digest = hashlib.sha256(pl_module.rng.get_state().numpy().tobytes()).hexdigest()
        self.pool_rng_at_start = [""] * dist.get_world_size()
        dist.all_gather_object(self.pool_rng_at_start, digest)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        with torch.no_grad():
            checksum = sum(p.double().sum() for p in pl_module.parameters()).reshape(1)
        gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, checksum)
        self.checksums.append([float(value) for value in gathered])
        paths: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(paths, list(batch["A_paths"]))
        self.a_paths.append(paths)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            report = {
                "world_size": trainer.world_size,
                "pool_rng_at_start": self.pool_rng_at_start,
                "checksums": self.checksums,
                "a_paths": self.a_paths,
            }
            Path(self.report).write_text(json.dumps(report))


def test_ddp_cpu_two_processes(tmp_path: Path) -> None:
    dataset = make_unpaired_dataset(tmp_path / "data", n_a=N_A, n_b=5)
    out = tmp_path / "run"
    report = tmp_path / "ranks.json"
    env = {"PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    result = run_train_subprocess(
        [
            *TINY,
            "trainer=ddp_cpu",
            "data=folder",
            f"data.root={dataset}",
            "data.num_workers=0",
            "trainer.max_epochs=1",
            "trainer.limit_val_batches=0",
            "callbacks.image_grid.every_n_steps=2",
            "+model.pool_seed=7",  # one seed for both ranks: the rank offset must tell them apart
            "logger=csv",
            "+callbacks.agreement._target_=test_ddp_cpu.RankAgreement",
            f"+callbacks.agreement.report={report}",
            f"hydra.run.dir={out}",
        ],
        env=env,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    data = json.loads(report.read_text())
    assert data["world_size"] == 2
    rank0_rng, rank1_rng = data["pool_rng_at_start"]
    assert rank0_rng != rank1_rng, "both ranks' image pools draw from the same generator state"
    assert len(data["checksums"]) == N_A // 2  # each rank trains on half of A
    for step, (rank0, rank1) in enumerate(data["checksums"]):
        assert rank0 == rank1, f"weights differ between ranks after iteration {step}"
    per_rank = [sorted(path for batch in data["a_paths"] for path in batch[rank]) for rank in (0, 1)]
    assert not set(per_rank[0]) & set(per_rank[1]), "the ranks' shards of A overlap"
    assert len(set(per_rank[0]) | set(per_rank[1])) == N_A

    checkpoints = sorted(path.name for path in (out / "checkpoints").iterdir())
    assert checkpoints == ["epoch0000-step00000008.ckpt", "last.ckpt"]
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == N_A
    processes = last["cyclegan_state"]["processes"]
    assert len(processes) == 2 and not torch.equal(processes[0]["rng"], processes[1]["rng"])
    assert len(last["callbacks"]["TrainingStateCheckpoint"]["rng"]) == 2  # each process's global RNGs
    grids = sorted(path.name for path in (out / "images").iterdir())
    assert grids == ["step_000002.png", "step_000004.png"]  # written once, by rank 0
    assert (out / "csv" / "version_0" / "metrics.csv").is_file()
