"""Weights & Biases for a training run: online only with credentials and a reachable server (never a login
prompt), otherwise offline for a later ``wandb sync``; a resumed run continues its wandb run."""

from __future__ import annotations

import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import DictConfig, open_dict


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
