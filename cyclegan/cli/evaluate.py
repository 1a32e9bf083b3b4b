"""``cyclegan-eval``: FID and KID of translated test images against the target domain."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig
from torch import nn

from cyclegan.cli.command_helpers import (
    USER_ERRORS,
    check_inference_settings,
    inference_options,
    require_settings,
    run_or_exit,
)
from cyclegan.data.domains import DOMAINS
from cyclegan.inference.checkpoints import detect_kind, open_generator
from cyclegan.inference.evaluation import (
    directions_for,
    evaluate_direction,
    format_table,
    split_folder,
    write_json,
)
from cyclegan.inference.metrics import DistributionScores, InceptionWeightsError, inception_extractor


def run_eval(cfg: DictConfig, extractor: nn.Module | None = None) -> dict[str, DistributionScores]:
    """Score each requested direction; writes ``cfg.output`` (JSON). ``extractor`` replaces Inception."""
    require_settings(cfg)
    directions = directions_for(cfg.direction)
    device = check_inference_settings(cfg)
    # the cheap checks first: a missing checkpoint or test folder is named before Inception is fetched
    detect_kind(Path(cfg.checkpoint))
    for domain in sorted({domain for direction in directions for domain in DOMAINS[direction]}):
        split_folder(cfg.data.root, cfg.data.split, domain)
    if extractor is None:
        extractor = inception_extractor(cfg.inception_weights, download=cfg.download)
    extractor = extractor.to(device)
    results = {}
    for direction in directions:
        generator = open_generator(cfg.checkpoint, direction, device=device, batchnorm=cfg.batchnorm).module
        scores, skipped = evaluate_direction(
            generator,
            cfg.data.root,
            direction,
            extractor,
            split=cfg.data.split,
            max_images=cfg.max_images,
            kid_subsets=cfg.kid_subsets,
            **inference_options(cfg),
        )
        for path, reason in skipped:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        results[direction] = scores
    write_json(
        results,
        cfg.output,
        checkpoint=str(cfg.checkpoint),
        data_root=str(cfg.data.root),
        split=cfg.data.split,
        feature_extractor=type(extractor).__name__,
    )
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    """Entry point of ``cyclegan-eval``."""
    results = run_or_exit("cyclegan-eval", lambda: run_eval(cfg), (*USER_ERRORS, InceptionWeightsError))
    print(format_table(results))
    print(f"wrote {cfg.output}")


if __name__ == "__main__":
    main()
