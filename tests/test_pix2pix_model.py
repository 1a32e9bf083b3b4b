"""Real Trainer runs of the pix2pix module with tiny networks: defaults, losses, the reference's iteration
order, validation L1, non-finite steps and the checkpoint's model record."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from test_inference_support import TinyFeatures
from test_model_training import trainer
from test_pix2pix_cli import make_aligned
from torch.utils.data import DataLoader

from cyclegan.callbacks.fid import FIDCallback
from cyclegan.data import PairedImageDataModule
from cyclegan.model import MODEL_KEY, Pix2Pix
from cyclegan.nn import ImageStatisticsBatchNorm2d

GEN = {"arch": "unet", "num_downs": 5, "ngf": 4}
DISC = {"ndf": 4}
LOSS_KEYS = {"G_GAN", "G_L1", "G", "D_real", "D_fake", "D"}


def tiny_model(**settings) -> Pix2Pix:
    return Pix2Pix(GEN, DISC, **settings)


def pairs(count: int = 2, size: int = 32, a_channels: int = 3, poison: tuple[int, ...] = ()) -> DataLoader:
    """Batches of aligned pairs (B a fixed function of A); batches listed in ``poison`` hold NaN in A."""
    generator = torch.Generator().manual_seed(0)
    data = []
    for index in range(count):
        a = torch.rand(1, a_channels, size, size, generator=generator) * 2 - 1
        b = (-a[:, :1]).expand(1, 3, size, size).clone()
        if index in poison:
            a[:] = float("nan")
        data.append({"A": a, "B": b, "A_paths": [f"{index}.png"], "B_paths": [f"{index}.png"]})
    return DataLoader(data, batch_size=None)


def test_defaults_are_the_reference_pix2pix():
    model = Pix2Pix()
    hp = model.hparams
    assert (
        hp.generator["arch"] == "unet_256" and hp.generator["norm"] == "batch" and hp.generator["use_dropout"]
    )
    assert hp.discriminator["arch"] == "basic" and hp.discriminator["norm"] == "batch"
    assert (hp.gan_mode, hp.lambda_L1, hp.lr, hp.beta1, hp.lr_policy) == (
        "vanilla",
        100.0,
        2e-4,
        0.5,
        "linear",
    )
    assert model.netD.model[0].in_channels == 6  # concat(A, B)
    assert any(isinstance(m, torch.nn.Dropout) for m in model.netG.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.netD.modules())
    assert Pix2Pix({"input_nc": 1}, {}).netD.model[0].in_channels == 4


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="wgangp needs a gradient penalty"):
        Pix2Pix(GEN, DISC, gan_mode="wgangp")
    with pytest.raises(ValueError, match="lambda_L1 must be >= 0"):
        Pix2Pix(GEN, DISC, lambda_L1=-1)
    with pytest.raises(ValueError, match=r"discriminator input_nc=3 conflicts .* input_nc \+ output_nc = 6"):
        Pix2Pix(GEN, {**DISC, "input_nc": 3})
    assert Pix2Pix(GEN, {**DISC, "input_nc": 6}).netD.model[0].in_channels == 6


def test_training_trains_both_networks_and_logs_the_reference_losses():
    model = tiny_model()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    run = trainer(max_steps=4, log_every_n_steps=1)
    run.fit(model, pairs(2))
    assert run.global_step == 4  # two optimizer steps (D, G) per iteration
    metrics = run.callback_metrics
    logged = {key[len("train/") : -len("_step")] for key in metrics if key.endswith("_step")}
    assert logged == LOSS_KEYS
    assert all(math.isfinite(value.item()) for value in metrics.values())
    torch.testing.assert_close(
        metrics["train/G_step"], metrics["train/G_GAN_step"] + metrics["train/G_L1_step"]
    )
    after = model.state_dict()
    for net in ("netG", "netD"):
        names = [name for name in before if name.startswith(f"{net}.") and "running" not in name]
        assert any(not torch.equal(before[name], after[name]) for name in names), f"{net} did not train"


def test_discriminator_steps_first_and_the_generator_step_sees_the_updated_discriminator():
    """Per iteration: G runs once; D judges (A, G(A)) and (A, B) with its weights before its step, then
    (A, G(A)) again for the generator's loss with the weights after it."""
    model = tiny_model()
    d_weights, g_calls = [], []
    model.netD.register_forward_hook(
        lambda module, args, out: d_weights.append(module.model[0].weight.clone())
    )
    model.netG.register_forward_hook(lambda *args: g_calls.append(1))
    trainer(max_steps=2).fit(model, pairs(1))
    assert len(g_calls) == 1 and len(d_weights) == 3
    assert torch.equal(d_weights[0], d_weights[1]) and not torch.equal(d_weights[1], d_weights[2])
    assert torch.equal(d_weights[2], model.netD.model[0].weight)


def test_l1_loss_is_weighted_by_lambda_l1():
    model = Pix2Pix({**GEN, "use_dropout": False}, DISC, lambda_L1=7.0)
    initial = copy.deepcopy(model.netG).train()  # batch statistics, as in the training step
    batch = next(iter(pairs(1)))
    captured: dict[str, torch.Tensor] = {}
    record = model.end_iteration
    model.end_iteration = lambda values, finite, size: (captured.update(values), record(values, finite, size))
    trainer(max_steps=2).fit(model, DataLoader([batch], batch_size=None))
    with torch.no_grad():
        expected = F.l1_loss(initial(batch["A"]), batch["B"]) * 7.0
    torch.testing.assert_close(captured["G_L1"], expected)


def test_validation_logs_l1_with_each_image_normalized_by_its_own_statistics():
    model = tiny_model()
    kinds = []
    model.netG.register_forward_pre_hook(
        lambda module, args: kinds.append(
            {type(m) for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)}
        )
    )
    run = trainer(max_steps=2, limit_val_batches=2, num_sanity_val_steps=0)
    run.fit(model, pairs(1), val_dataloaders=pairs(2))
    assert math.isfinite(run.callback_metrics["val/L1"].item())
    assert kinds[0] == {torch.nn.BatchNorm2d} and kinds[-1] == {ImageStatisticsBatchNorm2d}
    assert {type(m) for m in model.netG.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {
        torch.nn.BatchNorm2d
    }


def test_a_non_finite_iteration_changes_no_weight_and_no_running_statistic():
    model = tiny_model()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    trainer(max_epochs=1).fit(model, pairs(2, poison=(0,)))
    assert model.nonfinite_total == 1
    after = model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert any(name.endswith("running_mean") for name in changed)  # the finite iteration updated them
    assert all(torch.isfinite(after[name]).all() for name in after)
    single = tiny_model()
    single.load_state_dict(before)
    trainer(max_epochs=1).fit(single, pairs(1, poison=(0,)))
    assert all(torch.equal(before[name], value) for name, value in single.state_dict().items())


def test_checkpoint_names_the_model_and_its_generator(tmp_path):
    model = tiny_model()
    run = trainer(max_steps=2, default_root_dir=tmp_path, enable_checkpointing=True)
    run.fit(model, pairs(1))
    run.save_checkpoint(tmp_path / "last.ckpt")
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint[MODEL_KEY] == {"class": "Pix2Pix", "generators": {"AtoB": "netG"}}
    assert checkpoint["hyper_parameters"]["generator"]["num_downs"] == 5


def test_fid_during_training_scores_the_one_direction_on_aligned_data(tmp_path):
    make_aligned(tmp_path / "data", count=2)
    data = PairedImageDataModule(str(tmp_path / "data"), load_size=36, crop_size=32, num_workers=0)
    fid = FIDCallback(tmp_path / "data", every_n_epochs=1, feature_extractor=TinyFeatures(), batch_size=2)
    run = trainer(max_epochs=1, callbacks=[fid], limit_val_batches=0)
    run.fit(tiny_model(), datamodule=data)
    assert math.isfinite(run.callback_metrics["fid/AtoB"].item()) and "fid/BtoA" not in run.callback_metrics
