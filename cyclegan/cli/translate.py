"""``cyclegan-translate``: translate image files with a checkpoint, reference weights or an export."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from cyclegan.cli.command_helpers import (
    check_inference_settings,
    inference_options,
    require_settings,
    run_or_exit,
)
from cyclegan.inference.checkpoints import detect_kind, open_generator
from cyclegan.inference.evaluation import directions_for
from cyclegan.inference.files import (
    NOT_REGULAR,
    TranslationReport,
    find_inputs,
    plan_outputs,
    translate_files,
)


def check_translate_settings(cfg: DictConfig) -> None:
    """Raise a ValueError naming ``jpeg_quality`` or ``max_pixels`` when out of range."""
    if not 1 <= cfg.jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be between 1 and 100, got {cfg.jpeg_quality}")
    if cfg.max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive number of pixels, got {cfg.max_pixels}")


def run_translate(cfg: DictConfig) -> dict[str, TranslationReport]:
    """Translate ``cfg.input`` into ``cfg.output`` for each requested direction; one report per direction."""
    require_settings(cfg)
    directions = directions_for(cfg.direction)
    detect_kind(Path(cfg.checkpoint))  # a missing checkpoint is reported before anything else
    device = check_inference_settings(cfg)
    check_translate_settings(cfg)
    inputs, not_regular = find_inputs(cfg.input)
    if not inputs:
        raise FileNotFoundError(f"no image files found in input={cfg.input}")
    output = Path(cfg.output)
    plans = {}
    for direction in directions:  # check every output location before translating anything
        folder = output / direction if len(directions) > 1 else output
        plans[direction] = plan_outputs(inputs, folder, cfg.output_ext)
    # load every generator first: a file that holds one direction only fails before any output is written
    generators = {
        direction: open_generator(cfg.checkpoint, direction, device=device, batchnorm=cfg.batchnorm).module
        for direction in directions
    }
    reports = {}
    for direction, generator in generators.items():
        reports[direction] = translate_files(
            generator,
            inputs,
            plans[direction],
            tile_size=cfg.tile_size,
            tile_overlap=cfg.tile_overlap,
            description=direction,
            max_pixels=cfg.max_pixels,
            jpeg_quality=cfg.jpeg_quality,
            **inference_options(cfg),
        )
        reports[direction].skipped[:0] = [(path, NOT_REGULAR) for path in not_regular]
    return reports


@hydra.main(version_base="1.3", config_path="../conf", config_name="translate")
def main(cfg: DictConfig) -> None:
    """Entry point of ``cyclegan-translate``; exits 1 when nothing could be translated."""
    reports = run_or_exit("cyclegan-translate", lambda: run_translate(cfg))
    for direction, report in reports.items():
        print(f"{direction}: {report.summary()}")
    if any(report.written for report in reports.values()):
        print(f"output folder: {Path(cfg.output).resolve()}")
    if not any(report.written for report in reports.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
