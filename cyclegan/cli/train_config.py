"""The training config checked before anything is built: bad values fail at start with a message that
names the setting (exit status 2)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cyclegan.checkpoint_files import checkpoint_exists

EXIT_BAD_INPUT = 2
DATA_MODULE = "cyclegan.data.UnpairedImageDataModule"


class ConfigError(ValueError):
    """A config value that cannot work; raised before anything is built."""


# ----------------------------------------------------------------------------------------- validation
def validate_config(cfg: DictConfig) -> None:
    """Check the settings that would otherwise fail late (or silently) and raise `ConfigError`."""
    from cyclegan.cli.command_helpers import missing_settings

    missing = missing_settings(cfg)
    if missing:  # the checks below read these values
        raise ConfigError(
            "invalid configuration:\n  - "
            + "\n  - ".join(f"{key}: required, pass {key}=..." for key in missing)
        )
    problems: list[str] = []
    if cfg.data.get("_target_") == DATA_MODULE:
        problems += _data_problems(cfg.data)
    if cfg.model.get("_target_") == "cyclegan.model.CycleGAN":
        problems += _model_problems(cfg.model, cfg.data)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path not in (None, "last") and not checkpoint_exists(str(ckpt_path)):
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
        problems += _dataset_folder_problems(root)
    return problems


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
