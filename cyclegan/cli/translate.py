"""``cyclegan-translate``: translate image files with a checkpoint, reference weights or an export."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from cyclegan.callbacks.checkpoint_io import CheckpointError
from cyclegan.cli.settings import require_settings
from cyclegan.inference.checkpoints import detect_kind, open_generator
from cyclegan.inference.evaluation import directions_for
from cyclegan.inference.files import TranslationReport, find_inputs, plan_outputs, translate_files
from cyclegan.inference.translation import autocast_for, resolve_device


def run_translate(cfg: DictConfig) -> dict[str, TranslationReport]:
    """Translate ``cfg.input`` into ``cfg.output`` for each requested direction; one report per direction."""
    require_settings(cfg)
    directions = directions_for(cfg.direction)
    detect_kind(Path(cfg.checkpoint))  # a missing checkpoint is reported before anything else
    device = resolve_device(cfg.device)
    autocast_for(cfg.precision, device)  # validates the name before any work
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {cfg.batch_size}")
    if cfg.resize is not None and cfg.resize < 1:
        raise ValueError(f"resize must be a positive number of pixels (the shorter side), got {cfg.resize}")
    inputs = find_inputs(cfg.input)
    if not inputs:
        raise FileNotFoundError(f"no image files found in input={cfg.input}")
    output = Path(cfg.output)
    plans = {}
    for direction in directions:  # check every output location before translating anything
        folder = output / direction if len(directions) > 1 else output
        plans[direction] = plan_outputs(inputs, folder, cfg.output_ext)
    # load every generator first: a file that holds one direction only fails before any output is written
    generators = {
        direction: open_generator(cfg.checkpoint, direction, device=device).module for direction in directions
    }
    reports = {}
    for direction, generator in generators.items():
        reports[direction] = translate_files(
            generator,
            inputs,
            plans[direction],
            batch_size=cfg.batch_size,
            precision=str(cfg.precision),
            resize=cfg.resize,
            tile_size=cfg.tile_size,
            tile_overlap=cfg.tile_overlap,
            progress=cfg.progress,
            description=direction,
        )
    return reports


@hydra.main(version_base="1.3", config_path="../conf", config_name="translate")
def main(cfg: DictConfig) -> None:
    """Entry point of ``cyclegan-translate``; exits 1 when nothing could be translated."""
    try:
        reports = run_translate(cfg)
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"cyclegan-translate: error: {error}", file=sys.stderr)
        sys.exit(2)
    for direction, report in reports.items():
        print(f"{direction}: {report.summary()}")
    if any(report.written for report in reports.values()):
        print(f"output folder: {Path(cfg.output).resolve()}")
    if not any(report.written for report in reports.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
