"""``cyclegan-export``: write one generator as ONNX, TorchScript or safetensors."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from cyclegan.cli.command_helpers import require_settings, run_or_exit
from cyclegan.inference.checkpoints import check_direction, open_generator
from cyclegan.inference.export import check_format, check_output, export_generator, verify_onnx


def run_export(cfg: DictConfig) -> dict[str, object]:
    """Export as ``cfg`` says; returns what was written (and the ONNX check's max abs difference)."""
    require_settings(cfg)
    check_format(cfg.format)
    check_direction(cfg.direction)
    check_output(Path(cfg.output), [Path(cfg.checkpoint)], overwrite=cfg.overwrite)
    loaded = open_generator(cfg.checkpoint, cfg.direction, batchnorm=cfg.batchnorm)
    path = export_generator(loaded, cfg.format, cfg.output, overwrite=cfg.overwrite)
    result: dict[str, object] = {"output": str(path), "format": cfg.format, "direction": cfg.direction}
    if cfg.format == "onnx" and cfg.verify:
        result["onnxruntime_max_abs_diff"] = verify_onnx(loaded.module, path)
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    """Entry point of ``cyclegan-export``."""
    result = run_or_exit("cyclegan-export", lambda: run_export(cfg))
    print(f"wrote {result['output']} ({result['format']}, {result['direction']})")
    if "onnxruntime_max_abs_diff" in result:
        print(f"onnxruntime vs PyTorch: max abs difference {result['onnxruntime_max_abs_diff']:.2e}")


if __name__ == "__main__":
    main()
