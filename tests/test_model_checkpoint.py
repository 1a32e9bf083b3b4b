"""Checkpoints: weights_only loading, plain hyperparameters, pool/RNG state round trip, exact resume."""

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from cyclegan.model import STATE_KEY, CycleGAN

GEN = {"arch": "resnet", "n_blocks": 1, "ngf": 4}
DISC = {"arch": "basic", "ndf": 4}


def loader(count, size=32):
    generator = torch.Generator().manual_seed(0)
    data = [
        {
            "A": torch.rand(1, 3, size, size, generator=generator) * 2 - 1,
            "B": torch.rand(1, 3, size, size, generator=generator) * 2 - 1,
        }
        for _ in range(count)
    ]
    return DataLoader(data, batch_size=None)


def trainer(tmp_path, **settings):
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **settings,
    )


def assert_plain(value, where="hyper_parameters"):
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), where
            assert_plain(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_plain(item, f"{where}[{index}]")
    else:
        assert value is None or isinstance(value, (str, int, float, bool)), f"{where} is {type(value)}"


def test_checkpoint_loads_with_weights_only_and_holds_plain_hyperparameters(tmp_path):
    generator = OmegaConf.create({**GEN, "input_nc": 3, "output_nc": 3})
    model = CycleGAN(
        generator,
        OmegaConf.create(DISC),
        pool_size=3,
        compile=OmegaConf.create({}),
    )
    run = trainer(tmp_path, max_steps=6)
    run.fit(model, loader(3))
    path = tmp_path / "model.ckpt"
    run.save_checkpoint(path)

    checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    hparams = checkpoint["hyper_parameters"]
    assert_plain(hparams)
    assert hparams["generator"] == {
        "arch": "resnet",
        "layout": "seed",
        "input_nc": 3,
        "output_nc": 3,
        "ngf": 4,
        "n_blocks": 1,
    }
    assert hparams["discriminator"]["arch"] == "basic"
    assert {
        "netG_A.model.1.weight",
        "netG_B.model.1.weight",
        "netD_A.model.0.weight",
        "netD_B.model.0.weight",
    } <= set(checkpoint["state_dict"])
    saved = checkpoint[STATE_KEY]["processes"][0]
    assert len(saved["fake_A_pool"]["images"]) == 3 and len(saved["fake_B_pool"]["images"]) == 3
    assert isinstance(saved["rng"], torch.Tensor)

    restored = CycleGAN.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[name], tensor, rtol=0, atol=0)
    assert torch.equal(restored.rng.get_state(), model.rng.get_state())


def test_on_save_and_on_load_round_trip_pools_rng_and_counters():
    source = CycleGAN(GEN, DISC, pool_size=3, pool_seed=5)
    for step in range(6):
        source.fake_A_pool.query(torch.full((1, 3, 4, 4), float(step)))
        source.fake_B_pool.query(torch.full((1, 3, 4, 4), float(-step)))
    source.nonfinite_consecutive, source.nonfinite_total = 2, 7
    checkpoint = {}
    source.on_save_checkpoint(checkpoint)

    target = CycleGAN(GEN, DISC, pool_size=3, pool_seed=99)
    target.on_load_checkpoint(checkpoint)
    assert (target.nonfinite_consecutive, target.nonfinite_total) == (2, 7)
    assert torch.equal(target.rng.get_state(), source.rng.get_state())
    for pool in ("fake_A_pool", "fake_B_pool"):
        assert torch.equal(
            torch.stack(getattr(target, pool).images), torch.stack(getattr(source, pool).images)
        )
    for step in range(6, 20):
        batch = torch.full((2, 3, 4, 4), float(step))
        assert torch.equal(target.fake_A_pool.query(batch), source.fake_A_pool.query(batch))
        assert torch.equal(target.fake_B_pool.query(-batch), source.fake_B_pool.query(-batch))


def test_checkpoint_of_an_unknown_state_version_is_rejected():
    model = CycleGAN(GEN, DISC)
    with pytest.raises(ValueError, match="version 99"):
        model.on_load_checkpoint({STATE_KEY: {"version": 99, "processes": []}})


def run_training(tmp_path, epochs, ckpt_path=None):
    pl.seed_everything(0, workers=True)
    model = CycleGAN(
        GEN,
        DISC,
        gan_mode="wgangp",
        pool_size=2,
        lr_policy="linear",
        n_epochs=1,
        n_epochs_decay=1,
    )
    run = trainer(tmp_path, max_epochs=epochs)
    run.fit(model, loader(2), ckpt_path=ckpt_path)
    return model, run


def test_resuming_from_an_epoch_checkpoint_matches_an_uninterrupted_run(tmp_path):
    straight, _ = run_training(tmp_path / "straight", 2)

    _, run = run_training(tmp_path / "first", 1)
    path = tmp_path / "epoch1.ckpt"
    run.save_checkpoint(path)
    resumed, run = run_training(tmp_path / "resumed", 2, ckpt_path=path)

    assert run.global_step == 2 * 2 * 2
    for name, tensor in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    assert torch.equal(resumed.rng.get_state(), straight.rng.get_state())
    for pool in ("fake_A_pool", "fake_B_pool"):
        assert torch.equal(
            torch.stack(getattr(resumed, pool).images), torch.stack(getattr(straight, pool).images)
        )
    assert [s.get_last_lr() for s in resumed.lr_schedulers()] == [
        s.get_last_lr() for s in straight.lr_schedulers()
    ]
