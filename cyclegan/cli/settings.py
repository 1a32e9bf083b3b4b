"""Checks shared by the commands' Hydra configs."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def missing_settings(cfg: DictConfig) -> list[str]:
    """The settings left at ``???`` (required, no default), e.g. ``["data.root"]``; Hydra's own excluded."""
    own = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])  # composed with hydra or not
    return sorted(OmegaConf.missing_keys(own))


def require_settings(cfg: DictConfig) -> None:
    """Raise a ValueError naming every required setting that was not given (instead of a traceback)."""
    missing = missing_settings(cfg)
    if missing:
        raise ValueError(
            f"missing required setting{'s' * (len(missing) > 1)} {', '.join(missing)}: pass "
            f"{' '.join(f'{key}=...' for key in missing)} (see --help)"
        )
