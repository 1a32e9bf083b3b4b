"""cyclegan-train: train a GAN model (CycleGAN, CUT, pix2pix) from the Hydra configs in conf/ (entry
config conf/train.yaml), as thin as the lightning-hydra-template's entry: compose, check, instantiate, fit.

    cyclegan-train experiment=horse2zebra trainer=gpu
    cyclegan-train data=folder data.root=DIR logger=csv hydra.run.dir=OUT
    cyclegan-train hydra.run.dir=OUT ckpt_path=last        # resume OUT's newest checkpoint

The run folder is checked for write access and free space before Hydra writes into it and locked
while the run lasts (`run_folder_check`); the config is checked before anything is built (`train_config`;
bad values fail with a message naming the setting); resume and wandb set-up have their own modules; at
the end the command prints where the checkpoints, logs and image grids are (`run_report`). Exit status: 0
done, 2 bad config / checkpoint / run folder / training data / FID weights, 3 stopped on non-finite losses
(a checkpoint of the last good weights is written), 128 + N stopped by signal N (SIGTERM 143, SIGINT 130)
after writing last.ckpt.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from cyclegan.cli.resume import check_resume_compatible, earlier_run_warning, resolve_ckpt_path
from cyclegan.cli.run_folder_check import launched_for_rank_zero
from cyclegan.cli.run_report import run_summary
from cyclegan.cli.train_config import EXIT_BAD_INPUT, ConfigError, build_checked
from cyclegan.cli.wandb_setup import configure_wandb

OmegaConf.register_new_resolver("cyclegan.add", lambda *values: sum(values), replace=True)

EXIT_NONFINITE = 3


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Each entry with a ``_target_`` of a config group (callbacks, logger) instantiated, in order."""
    if not group:
        return []
    return [
        hydra.utils.instantiate(entry, _convert_="all")
        for entry in group.values()
        if isinstance(entry, DictConfig) and "_target_" in entry
    ]


def train(cfg: DictConfig) -> int:
    """Lock the run folder, build and check, fit; returns the process exit status."""
    from cyclegan.callbacks.run_folder import RunFolderError, RunFolderLock

    run_dir = Path(cfg.paths.output_dir)
    if not launched_for_rank_zero():
        return _train(cfg, run_dir)
    try:
        with RunFolderLock(run_dir):
            return _train(cfg, run_dir)
    except RunFolderError as error:
        print(f"cyclegan-train: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def stop_leftover_workers() -> None:
    """Kill data-loader workers still running once fit has returned (after a data error, torchdata's
    loader leaves them up, and Lightning stops only torch DataLoader workers). They ignore SIGTERM, the
    signal multiprocessing stops them with at exit, so the process would hang joining them."""
    for process in multiprocessing.active_children():
        process.kill()
        process.join(timeout=10)


def _train(cfg: DictConfig, run_dir: Path) -> int:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import WandbLogger

    from cyclegan.callbacks import AtomicCheckpointIO, RunCheckpoint, StopAfterSignal
    from cyclegan.checkpoint_files import CheckpointError
    from cyclegan.data.datamodule import data_error_message
    from cyclegan.inference.metrics import InceptionWeightsError
    from cyclegan.model import NonFiniteLossError

    try:
        run = build_checked(cfg)
        warning = earlier_run_warning(cfg.get("ckpt_path"), cfg.paths.checkpoint_dir)
        if warning is not None:
            print(warning, file=sys.stderr)
        ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.checkpoint_dir)
        if ckpt_path is not None:
            check_resume_compatible(ckpt_path, cfg)
    except (ConfigError, CheckpointError) as error:
        print(f"cyclegan-train: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT

    if cfg.get("logger") and "wandb" in cfg.logger:
        configure_wandb(cfg.logger.wandb, run_dir, resuming=ckpt_path is not None)

    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        _convert_="all",
    )
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    for logger in trainer.loggers:
        logger.log_hyperparams({"config": config})

    status = 0
    try:
        trainer.fit(run.model, datamodule=run.datamodule, ckpt_path=ckpt_path)
    except StopAfterSignal as stop:
        status = 128 + stop.signum
    except NonFiniteLossError as error:
        print(f"cyclegan-train: training stopped: {error}", file=sys.stderr)
        status = EXIT_NONFINITE
    except (CheckpointError, InceptionWeightsError) as error:
        print(f"cyclegan-train: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:
        message = data_error_message(error)  # raised in a DataLoader worker: its message, not its traceback
        if message is None:
            raise
        print(f"cyclegan-train: error: training data: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        stop_leftover_workers()
    if trainer.is_global_zero:
        checkpoint = trainer.checkpoint_callback
        last = checkpoint.last_model_path if isinstance(checkpoint, RunCheckpoint) else None
        print(run_summary(run_dir, last, cfg.paths.image_dir, trainer.loggers, WandbLogger))
        if status > 128:
            print(f"cyclegan-train: resume with: cyclegan-train ... hydra.run.dir={run_dir} ckpt_path=last")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            # flush and close the run: the next job of a sweep opens its own
            logger.experiment.finish(exit_code=status)
    return status


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def _hydra_entry(cfg: DictConfig) -> None:
    status = train(cfg)
    if status:
        raise SystemExit(status)


def main() -> None:
    """Console entry point (``cyclegan-train``)."""
    _hydra_entry()


if __name__ == "__main__":
    main()
