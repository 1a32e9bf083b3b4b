"""Resuming a training run: ``ckpt_path=last`` resolved to the newest checkpoint, a warning before a fresh
start replaces an earlier run's checkpoints, and a checkpoint checked to fit the config before training."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf

from cyclegan.checkpoint_files import find_latest_checkpoint, is_local, load_checkpoint_file, local_path
from cyclegan.cli.train_config import ConfigError


def resolve_ckpt_path(ckpt_path: str | None, checkpoint_dir: str) -> str | None:
    """``last`` -> the newest checkpoint in this run's checkpoint folder (None when there is none yet)."""
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
    """Read the checkpoint's metadata (a local file's tensors memory-mapped, not read) and compare the
    networks with the config's."""
    local = is_local(ckpt_path)
    if local and not zipfile.is_zipfile(local_path(ckpt_path)):
        raise ConfigError(
            f"ckpt_path={ckpt_path}: not a checkpoint written by cyclegan-train (not a torch.save zip "
            "archive; the file may be truncated or of another kind); pass a .ckpt from a run's checkpoints/"
        )
    checkpoint = load_checkpoint_file(ckpt_path, mmap=local)
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
