"""The run folder checked (writable, free space, not in use) before Hydra writes into it: a Hydra
callback, so a bad folder is one line and exit status 2 instead of Hydra's traceback."""

from __future__ import annotations

import os
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from cyclegan.callbacks.run_folder import RunFolderError, RunFolderLock, check_run_folder
from cyclegan.cli.train_config import EXIT_BAD_INPUT


def launched_for_rank_zero() -> bool:
    """False in the processes a launcher starts for the other ranks of a distributed run (Lightning's DDP
    launcher sets LOCAL_RANK, SLURM SLURM_PROCID, torchrun RANK, multi-node runs NODE_RANK): they share
    rank 0's run folder, which rank 0 alone locks."""
    return all(
        int(os.environ.get(name, "0")) == 0 for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK")
    )


class RunFolderCheck(Callback):
    """Hydra callback (conf/hydra/default.yaml): the run folder is created and checked (writable, free
    space, not in use by another training) before Hydra writes its config and log file into it, so that
    a bad folder is one line and exit status 2, not a traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, config, in_use=launched_for_rank_zero())

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, config, in_use=False)  # each job locks its own folder

    @staticmethod
    def _check(folder: str, config: DictConfig, *, in_use: bool) -> None:
        try:
            check_run_folder(folder, float(config.get("min_free_disk_mb", 0)))
            if in_use:
                with RunFolderLock(folder):  # train() takes it for the run; this refuses a busy folder early
                    pass
        except RunFolderError as error:
            print(f"cyclegan-train: error: {error}", file=sys.stderr)
            raise SystemExit(EXIT_BAD_INPUT) from None
