"""The CUT and FastCUT configs: the reference CUT defaults, the same generator/discriminator keys as
CycleGAN's, and a CUT and a FastCUT recipe for every dataset that has a CycleGAN recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from test_conf_compose import CONF, compose_train, options
from test_train_cli import make_unpaired_dataset

from cyclegan.model import CUT

REFERENCE = {
    "cut": {"lambda_NCE": 1.0, "nce_idt": True, "flip_equivariance": False, "epochs": (200, 200)},
    "fastcut": {"lambda_NCE": 10.0, "nce_idt": False, "flip_equivariance": True, "epochs": (150, 50)},
}


def is_pix2pix_recipe(name: str) -> bool:
    """A paired recipe trains pix2pix, which has no CUT counterpart."""
    return "override /model: pix2pix" in (CONF / "experiment" / f"{name}.yaml").read_text()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_unpaired_dataset(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_model_configs_hold_the_reference_cut_defaults(name: str, dataset: Path, tmp_path: Path) -> None:
    cfg = compose_train([f"model={name}", "data=folder", f"data.root={dataset}"], tmp_path)
    model, expected = cfg.model, REFERENCE[name]
    assert model._target_ == "cyclegan.model.CUT"
    assert (model.lr, model.beta1, model.beta2, model.lr_policy) == (2e-4, 0.5, 0.999, "linear")
    assert (model.n_epochs, model.n_epochs_decay) == expected["epochs"]
    assert cfg.trainer.max_epochs == sum(expected["epochs"])
    assert (model.gan_mode, model.lambda_GAN, model.lambda_NCE) == ("lsgan", 1.0, expected["lambda_NCE"])
    assert (model.nce_idt, model.flip_equivariance) == (expected["nce_idt"], expected["flip_equivariance"])
    assert (list(model.nce_layers), model.num_patches, model.nce_T, model.netF_nc) == (
        [0, 4, 8, 12, 16],
        256,
        0.07,
        256,
    )
    assert (model.generator.arch, model.generator.n_blocks, model.generator.ngf) == ("resnet", 9, 64)
    assert (model.discriminator.arch, model.discriminator.ndf) == ("basic", 64)


def test_the_same_network_keys_as_cyclegan_configure_cut(dataset: Path, tmp_path: Path) -> None:
    overrides = ["model.generator.ngf=8", "model.generator.n_blocks=6", "model.discriminator.ndf=16"]
    cfg = compose_train(["model=fastcut", *overrides, "data=folder", f"data.root={dataset}"], tmp_path)
    model = instantiate(cfg.model, _convert_="all")
    assert isinstance(model, CUT)
    assert (model.netG.spec["ngf"], model.netG.spec["n_blocks"], model.netD.spec["ndf"]) == (8, 6, 16)


def test_every_cyclegan_recipe_has_a_cut_and_a_fastcut_recipe() -> None:
    experiments = set(options("experiment"))
    cyclegan = {name for name in experiments if not name.endswith("cut") and not is_pix2pix_recipe(name)}
    assert {f"{name}_{model}" for name in cyclegan for model in REFERENCE} <= experiments
    assert (CONF / "experiment" / "horse2zebra_cut.yaml").is_file()


@pytest.mark.parametrize("name", [name for name in options("experiment") if name.endswith("cut")])
def test_cut_recipes_compose(name: str, dataset: Path, tmp_path: Path) -> None:
    cfg = compose_train([f"experiment={name}", f"data.root={dataset}"], tmp_path)
    dataset_name, model = name.rsplit("_", 1)
    assert cfg.model._target_ == "cyclegan.model.CUT" and cfg.task_name == name
    assert cfg.model.flip_equivariance == REFERENCE[model]["flip_equivariance"]
    if dataset_name != "sample":
        assert (cfg.data.load_size, cfg.data.crop_size, cfg.data.batch_size) == (286, 256, 1)
        assert (cfg.model.n_epochs, cfg.model.n_epochs_decay) == REFERENCE[model]["epochs"]
