"""cyclegan-train: train a CycleGAN from the Hydra configs in conf/ (entry config conf/train.yaml).

    cyclegan-train experiment=horse2zebra trainer=gpu
    cyclegan-train data=folder data.root=DIR logger=csv hydra.run.dir=OUT
    cyclegan-train hydra.run.dir=OUT ckpt_path=last        # resume OUT's newest checkpoint

The run folder is checked for write access and free space before Hydra writes into it and locked
while the run lasts (a second training in the same folder is refused); the config is checked before
anything is built (bad values fail with a message naming the setting); at the end the command prints
where the checkpoints, logs and image grids are. Exit status: 0 done, 2 bad config / checkpoint / run
folder / training data / FID weights, 3 stopped on non-finite losses (a checkpoint of the last good
weights is written), 128 + N stopped by signal N (SIGTERM 143, SIGINT 130) after writing last.ckpt.
"""

from __future__ import annotations

import netrc
import os
import socket
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

OmegaConf.register_new_resolver("cyclegan.add", lambda *values: sum(values), replace=True)

EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3
DATA_MODULE = "cyclegan.data.UnpairedImageDataModule"
PAIRED_DATA_MODULE = "cyclegan.data.PairedImageDataModule"
MODELS = ("cyclegan.model.CycleGAN", "cyclegan.model.Pix2Pix")


class ConfigError(ValueError):
    """A config value that cannot work; raised before anything is built."""


# ----------------------------------------------------------------------------------------- validation
def validate_config(cfg: DictConfig) -> None:
    """Check the settings that would otherwise fail late (or silently) and raise `ConfigError`."""
    from cyclegan.cli.settings import missing_settings

    missing = missing_settings(cfg)
    if missing:  # the checks below read these values
        raise ConfigError(
            "invalid configuration:\n  - "
            + "\n  - ".join(f"{key}: required, pass {key}=..." for key in missing)
        )
    problems: list[str] = []
    if cfg.data.get("_target_") in (DATA_MODULE, PAIRED_DATA_MODULE):
        problems += _data_problems(cfg.data)
    if cfg.model.get("_target_") in MODELS:
        problems += _model_problems(cfg.model, cfg.data)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path not in (None, "last") and not Path(str(ckpt_path)).is_file():
        problems.append(f"ckpt_path={ckpt_path}: no such checkpoint file (or use ckpt_path=last)")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def _data_problems(data: DictConfig) -> list[str]:
    from cyclegan.data import PREPROCESS_MODES

    problems = []
    preprocess = data.get("preprocess", "resize_and_crop")
    if preprocess not in PREPROCESS_MODES:
        problems.append(f"data.preprocess={preprocess}: unknown, choose one of {', '.join(PREPROCESS_MODES)}")
    load_size, crop_size = int(data.get("load_size", 286)), int(data.get("crop_size", 256))
    if preprocess in ("resize_and_crop", "scale_width_and_crop") and crop_size > load_size:
        problems.append(
            f"data.crop_size={crop_size} is larger than data.load_size={load_size}: a "
            f"{crop_size}x{crop_size} crop does not fit in the {load_size}-pixel resized image"
        )
    if data.get("direction", "AtoB") not in ("AtoB", "BtoA"):
        problems.append(f"data.direction={data.direction}: choose AtoB or BtoA")
    if int(data.get("batch_size", 1)) < 1:
        problems.append(f"data.batch_size={data.batch_size}: must be >= 1")
    root = str(data.root)
    if "://" not in root:  # remote roots (fsspec URLs) are checked by the data module itself
        if data.get("_target_") == PAIRED_DATA_MODULE:
            problems += _paired_folder_problems(root, str(data.get("format", "auto")))
        else:
            problems += _dataset_folder_problems(root)
    return problems


def _paired_folder_problems(root: str, data_format: str) -> list[str]:
    """The paired data module's layout (detected as it does) and its training folders, one line each."""
    from cyclegan.data.files import PAIRED_LAYOUT, DatasetRoot
    from cyclegan.data.paired import detect_format

    try:
        layout = detect_format(DatasetRoot(root, PAIRED_LAYOUT), data_format)
    except (OSError, ValueError) as error:
        return [f"data.root={root}: {error}"]
    folders = [Path(root) / name for name in (("train",) if layout == "aligned" else ("trainA", "trainB"))]
    return [
        f"data.root={root}: {folder} ({layout} layout) is missing or holds no image file; {PAIRED_LAYOUT}"
        for folder in folders
        if not folder.is_dir() or not _has_image(folder)
    ]


def _dataset_folder_problems(root: str) -> list[str]:
    """One line per problem with the dataset folder: missing root, missing splits, empty splits."""
    where = "" if Path(root).is_absolute() else f", relative to the working directory {Path.cwd()}"
    get_one = "get a reference dataset with cyclegan-download NAME or pass data.root=DIR"
    if not Path(root).is_dir():
        return [f"data.root={root}: no such folder{where}; {get_one}"]
    missing = [split for split in ("trainA", "trainB") if not (Path(root) / split).is_dir()]
    if missing:
        return [
            f"data.root={root}: missing dataset folder{'s' * (len(missing) > 1)} {' and '.join(missing)} "
            f"(a dataset folder holds trainA/ and trainB/, testA/ and testB/ optional{where}); {get_one}"
        ]
    return [
        f"data.root={root}: dataset folder {Path(root) / split} holds no image file"
        for split in ("trainA", "trainB")
        if not _has_image(Path(root) / split)
    ]


def _has_image(folder: Path) -> bool:
    from cyclegan.data.files import find_local_images  # as the data module lists: symlinks followed

    return bool(find_local_images(folder).images)


def _model_problems(model: DictConfig, data: DictConfig) -> list[str]:
    import torch

    from cyclegan.model import GAN_MODES, LR_POLICIES
    from cyclegan.nn import build_discriminator, build_generator
    from cyclegan.nn.factory import DISCRIMINATOR_ARCHS, GENERATOR_ARCHS

    problems = []
    if model.get("gan_mode", "lsgan") not in GAN_MODES:
        problems.append(
            f"model.gan_mode={model.gan_mode}: unknown loss, choose one of {', '.join(GAN_MODES)}"
        )
    if model.get("lr_policy", "linear") not in LR_POLICIES:
        problems.append(
            f"model.lr_policy={model.lr_policy}: unknown schedule, choose one of {', '.join(LR_POLICIES)}"
        )
    networks = {
        "generator": (build_generator, GENERATOR_ARCHS),
        "discriminator": (build_discriminator, DISCRIMINATOR_ARCHS),
    }
    built = {}
    for name, (build, archs) in networks.items():
        options = OmegaConf.to_container(model[name], resolve=True)
        arch = options.get("arch")
        if arch not in archs:
            problems.append(
                f"model.{name}.arch={arch}: unknown architecture, choose one of {', '.join(archs)}"
            )
            continue
        try:
            with torch.device("meta"):  # builds the network's structure only: no memory, no compute
                built[name] = build(**options)
        except (ValueError, TypeError) as error:
            problems.append(f"model.{name}: {error}")
    generator = built.get("generator")
    crop_size = int(data.get("crop_size", 256))
    if generator is not None and data.get("preprocess", "resize_and_crop") in ("resize_and_crop", "crop"):
        multiple = generator.size_multiple
        if crop_size % multiple:
            problems.append(
                f"data.crop_size={crop_size}: the {generator.spec['arch']} generator needs image sizes "
                f"that are multiples of {multiple}"
            )
    return problems


# ------------------------------------------------------------------------------------- run preparation
def resolve_ckpt_path(ckpt_path: str | None, checkpoint_dir: str) -> str | None:
    """``last`` -> the newest checkpoint in this run's checkpoint folder (None when there is none yet)."""
    from cyclegan.callbacks import find_latest_checkpoint

    if ckpt_path != "last":
        return ckpt_path
    latest = find_latest_checkpoint(checkpoint_dir)
    if latest is None:
        print(f"cyclegan-train: ckpt_path=last: no checkpoint in {checkpoint_dir} yet, starting from scratch")
        return None
    print(f"cyclegan-train: resuming from {latest}")
    return str(latest)


# what Lightning needs to resume a run (the loops' and optimizers' state come with them)
_RESUME_KEYS = ("state_dict", "pytorch-lightning_version", "loops", "optimizer_states")


def earlier_run_warning(ckpt_path: str | None, checkpoint_dir: str) -> str | None:
    """A warning when a fresh start would write over an earlier run's checkpoints in the same folder."""
    from cyclegan.callbacks import find_latest_checkpoint

    if ckpt_path is not None:
        return None
    existing = find_latest_checkpoint(checkpoint_dir)
    if existing is None:
        return None
    return (
        f"cyclegan-train: warning: {existing} is from an earlier run in this folder; this run starts from "
        "scratch and replaces last.ckpt (resume instead with ckpt_path=last, or pick a new hydra.run.dir)"
    )


def check_resume_compatible(ckpt_path: str, cfg: DictConfig) -> None:
    """Read the checkpoint's metadata (tensors memory-mapped, not read) and compare the networks."""
    from cyclegan.callbacks import load_checkpoint_file

    if not zipfile.is_zipfile(ckpt_path):
        raise ConfigError(
            f"ckpt_path={ckpt_path}: not a checkpoint written by cyclegan-train (not a torch.save zip "
            "archive; the file may be truncated or of another kind); pass a .ckpt from a run's checkpoints/"
        )
    checkpoint = load_checkpoint_file(ckpt_path, mmap=True)
    missing = [key for key in _RESUME_KEYS if key not in checkpoint]
    if missing:
        raise ConfigError(
            f"ckpt_path={ckpt_path}: not a training checkpoint (it has no {', '.join(missing)}); resume from "
            "a .ckpt in a run's checkpoints/ folder (weights-only files cannot resume training)"
        )
    saved = checkpoint.get("hyper_parameters", {})
    for name in ("generator", "discriminator"):
        wanted = OmegaConf.to_container(cfg.model[name], resolve=True)
        have = saved.get(name)
        if not isinstance(have, Mapping):
            continue
        differ = {
            key: (have[key], value) for key, value in wanted.items() if key in have and have[key] != value
        }
        if differ:
            details = ", ".join(
                f"{key}: checkpoint {old!r}, config {new!r}" for key, (old, new) in differ.items()
            )
            raise ConfigError(
                f"ckpt_path={ckpt_path} holds a different model.{name} ({details}); resume with the settings "
                "it was trained with"
            )


def configure_wandb(logger_cfg: DictConfig, run_dir: Path, resuming: bool) -> None:
    """Offline unless credentials and the server are there (never a login prompt); resume the run id.

    Offline goes through WANDB_MODE (inherited by DDP ranks), not the logger's ``offline`` flag, which
    Lightning refuses together with ``log_model``: offline runs keep their checkpoint artifacts for
    ``wandb sync``.
    """
    if "WANDB_MODE" not in os.environ and not logger_cfg.get("offline", False):
        online = _wandb_credentials() and _wandb_reachable()
        if not online:
            print("cyclegan-train: no wandb credentials or no connection: logging offline (wandb sync later)")
        os.environ["WANDB_MODE"] = "online" if online else "offline"
    if resuming and logger_cfg.get("id") is None:
        previous = _previous_wandb_run_id(run_dir / "wandb")
        if previous is not None:
            with open_dict(logger_cfg):
                logger_cfg.id = previous
                logger_cfg.resume = "allow"


def _wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"


def _wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(_wandb_host()) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _wandb_reachable(timeout_s: float = 3.0) -> bool:
    try:
        with socket.create_connection((_wandb_host(), 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _previous_wandb_run_id(wandb_dir: Path) -> str | None:
    runs = sorted(wandb_dir.glob("*run-*-*"), key=lambda path: path.stat().st_mtime_ns)
    return runs[-1].name.rsplit("-", 1)[-1] if runs else None


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Each entry with a ``_target_`` of a config group (callbacks, logger) instantiated, in order."""
    if not group:
        return []
    return [
        hydra.utils.instantiate(entry, _convert_="all")
        for entry in group.values()
        if isinstance(entry, DictConfig) and "_target_" in entry
    ]


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
        from cyclegan.callbacks import RunFolderError, RunFolderLock, check_run_folder

        try:
            check_run_folder(folder, float(config.get("min_free_disk_mb", 0)))
            if in_use:
                with RunFolderLock(folder):  # train() takes it for the run; this refuses a busy folder early
                    pass
        except RunFolderError as error:
            print(f"cyclegan-train: error: {error}", file=sys.stderr)
            raise SystemExit(EXIT_BAD_INPUT) from None


# ------------------------------------------------------------------------------------------- training
def train(cfg: DictConfig) -> int:
    """Lock the run folder, validate, build, fit; returns the process exit status."""
    from cyclegan.callbacks import RunFolderError, RunFolderLock

    run_dir = Path(cfg.paths.output_dir)
    if not launched_for_rank_zero():
        return _train(cfg, run_dir)
    try:
        with RunFolderLock(run_dir):
            return _train(cfg, run_dir)
    except RunFolderError as error:
        print(f"cyclegan-train: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _train(cfg: DictConfig, run_dir: Path) -> int:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import WandbLogger

    from cyclegan.callbacks import AtomicCheckpointIO, CheckpointError, RunCheckpoint, StopAfterSignal
    from cyclegan.data.datamodule import data_error_message
    from cyclegan.inference.metrics import InceptionWeightsError
    from cyclegan.model import NonFiniteLossError

    try:
        validate_config(cfg)
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

    pl.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
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
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
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


def run_summary(
    run_dir: Path, last_checkpoint: str | None, image_dir: str, loggers: list, wandb_type: type
) -> str:
    """Where this run's outputs are."""
    lines = [f"cyclegan-train: run folder {run_dir}"]
    lines.append(f"  checkpoint:  {last_checkpoint or 'none written'}")
    for logger in loggers:
        if isinstance(logger, wandb_type):
            run = logger.experiment
            where = Path(run.dir).parent if getattr(run, "dir", None) else Path(logger.save_dir or run_dir)
            lines.append(
                f"  wandb log:   {where}"
                + ("  (offline: wandb sync it)" if run.settings.mode == "offline" else "")
            )
        elif getattr(logger, "log_dir", None):
            lines.append(f"  {type(logger).__name__}: {logger.log_dir}")
    if Path(image_dir).is_dir():
        lines.append(f"  image grids: {image_dir}")
    train_log = next(iter(sorted(run_dir.glob("*.log"))), None)
    if train_log is not None:
        lines.append(f"  console log: {train_log}")
    return "\n".join(lines)


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
