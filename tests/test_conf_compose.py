"""Every config group option composes, and what it describes instantiates (Hydra compose API)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from test_train_cli import make_unpaired_dataset

import cyclegan.cli.train  # noqa: F401  (registers the cyclegan.add resolver)
from cyclegan.cli.train import instantiate_group
from cyclegan.cli.train_config import build_checked

CONF = Path(__file__).resolve().parents[1] / "conf"
SMALL = ["model.generator.ngf=4", "model.discriminator.ndf=4"]


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_unpaired_dataset(tmp_path_factory.mktemp("data"))


def compose_train(overrides: list[str], run_dir: Path) -> DictConfig:
    """Compose conf/train.yaml as cyclegan-train would, with ${hydra:...} resolving to run_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"hydra.run.dir={run_dir}"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    GlobalHydra.instance().clear()
    return cfg


def test_configs_ship_inside_the_package() -> None:
    shipped = importlib.resources.files("cyclegan.conf")
    assert (shipped / "train.yaml").is_file()
    assert (shipped / "experiment" / "horse2zebra.yaml").is_file()


def test_groups_have_the_documented_options() -> None:
    assert {"sample", "folder", "horse2zebra", "cityscapes", "maps", "grumpifycat"} <= set(options("data"))
    assert {"resnet_9blocks", "resnet_6blocks", "unet", "reference"} <= set(options("model"))
    assert {"cpu", "gpu", "ddp", "ddp_cpu"} <= set(options("trainer"))
    assert {"wandb", "csv", "tensorboard", "none"} <= set(options("logger"))
    assert {"sample", "horse2zebra"} <= set(options("experiment"))
    assert {"fdr", "overfit", "profiler", "limit"} <= set(options("debug"))


def test_defaults_compose(tmp_path: Path) -> None:
    cfg = compose_train([], tmp_path)
    assert cfg.model.generator.arch == "resnet" and cfg.model.generator.n_blocks == 9
    assert cfg.trainer.max_epochs == 200  # n_epochs + n_epochs_decay
    assert cfg.logger.wandb._target_.endswith("WandbLogger")
    assert cfg.callbacks.model_checkpoint.dirpath == str(tmp_path / "checkpoints")


@pytest.mark.parametrize("name", options("data"))
def test_data_options_instantiate(name: str, dataset: Path, tmp_path: Path) -> None:
    cfg = compose_train([f"data={name}", f"data.root={dataset}"], tmp_path)
    datamodule = instantiate(cfg.data, _convert_="all")
    assert isinstance(datamodule, pl.LightningDataModule)
    build_checked(cfg)


@pytest.mark.parametrize("name", options("model"))
def test_model_options_instantiate(name: str, dataset: Path, tmp_path: Path) -> None:
    crop = ["data.load_size=256", "data.crop_size=256"] if name == "unet" else []
    cfg = compose_train([f"model={name}", *SMALL, "data=folder", f"data.root={dataset}", *crop], tmp_path)
    model = instantiate(cfg.model, _convert_="all")
    generators = [getattr(model, name) for name in model.generator_names.values()]
    assert isinstance(model, pl.LightningModule) and all(net is not None for net in generators)
    build_checked(cfg)


# ids end in "-trainer": a bare "gpu" id would read as the `gpu` marker and be skipped without CUDA
@pytest.mark.parametrize("name", options("trainer"), ids=[f"{name}-trainer" for name in options("trainer")])
def test_trainer_options(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"trainer={name}"], tmp_path)
    if cfg.trainer.accelerator == "gpu":  # no GPU here: the strategy still builds
        if "strategy" in cfg.trainer:
            instantiate(cfg.trainer.strategy)
        return
    trainer = instantiate(cfg.trainer, logger=False, _convert_="all")
    assert trainer.max_epochs == 200


@pytest.mark.parametrize("name", options("logger"))
def test_logger_options(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"logger={name}"], tmp_path)
    loggers = instantiate_group(cfg.get("logger"))
    assert len(loggers) == (0 if name == "none" else 1)
    for logger in loggers:
        assert str(logger.save_dir).startswith(str(tmp_path))


@pytest.mark.parametrize("name", [name for name in options("callbacks") if name != "fid"])
def test_callback_options(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"callbacks={name}"], tmp_path)
    callbacks = instantiate_group(cfg.get("callbacks"))
    assert all(isinstance(callback, pl.Callback) for callback in callbacks)


@pytest.mark.parametrize("name", options("experiment"))
def test_experiments_compose(name: str, dataset: Path, tmp_path: Path) -> None:
    cfg = compose_train([f"experiment={name}", f"data.root={dataset}"], tmp_path)
    build_checked(cfg)
    if not name.startswith("sample") and not name.endswith("cut"):  # the reference CycleGAN recipe
        assert (cfg.data.load_size, cfg.data.crop_size, cfg.data.batch_size) == (286, 256, 1)
        assert (cfg.model.n_epochs, cfg.model.n_epochs_decay, cfg.trainer.max_epochs) == (100, 100, 200)
        assert cfg.model.generator.n_blocks == 9 and cfg.model.lambda_identity == 0.5


@pytest.mark.parametrize("name", [name for name in options("debug") if name != "default"])
def test_debug_options(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"debug={name}"], tmp_path)
    trainer = instantiate(cfg.trainer, logger=False, _convert_="all")
    assert isinstance(trainer, pl.Trainer) and cfg.data.num_workers == 0


def test_slurm_launcher_composes(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the optional [slurm] extra")
    cfg = compose_train(["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2"], tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.additional_parameters.signal == f"USR1@{launcher.signal_delay_s}"
    assert launcher.max_num_timeout == 0


@pytest.mark.parametrize(
    ("name", "usage"),
    [
        ("translate", "cyclegan-translate checkpoint=FILE input=PATH output=DIR"),
        ("export", "cyclegan-export checkpoint=FILE format=onnx|torchscript|safetensors"),
        ("eval", "cyclegan-eval checkpoint=FILE data.root=DIR"),
    ],
)
def test_tool_help_shows_usage_not_the_training_groups(name: str, usage: str) -> None:
    """--help of the inference tools explains their settings; the training config groups (which share
    the config folder) are not theirs to list."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, return_hydra_config=True)
    GlobalHydra.instance().clear()
    template = cfg.hydra.help.template
    assert usage in template and "$CONFIG" in template and "$APP_CONFIG_GROUPS" not in template


def test_train_help_names_the_command_and_where_outputs_go() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.hydra.help.header.startswith("cyclegan-train: train a CycleGAN")
    assert "hydra.run.dir" in cfg.hydra.help.header and "$APP_CONFIG_GROUPS" in cfg.hydra.help.template
