"""What cyclegan-train prints at the end: where the run's checkpoint, logs and image grids are."""

from __future__ import annotations

from pathlib import Path


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
