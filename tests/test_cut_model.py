"""Real Trainer runs of the CUT module with tiny networks: what steps, in which order, with which
randomness; FastCUT's flips; precision, channels_last and compile; validation; checkpoint contents."""

from __future__ import annotations

import math

import pytest
import torch
from test_model_training import loader, trainer

from cyclegan.model import CUT, MODEL_KEY

GEN = {"arch": "resnet", "n_blocks": 1, "ngf": 4}
DISC = {"arch": "basic", "ndf": 4}
LAYERS = [0, 4, 8, 10]  # the padded input, both downsamplings, the one residual block
FASTCUT = {"nce_idt": False, "flip_equivariance": True, "lambda_NCE": 10.0}


def tiny_cut(**settings) -> CUT:
    torch.manual_seed(0)
    return CUT(GEN, DISC, **{"nce_layers": LAYERS, "num_patches": 16, **settings})


@pytest.mark.parametrize(
    ("settings", "losses"),
    [
        ({}, {"G_GAN", "NCE", "NCE_Y", "G", "D_real", "D_fake", "D"}),
        (FASTCUT, {"G_GAN", "NCE", "G", "D_real", "D_fake", "D"}),
    ],
    ids=["cut", "fastcut"],
)
def test_one_iteration_trains_g_f_and_d_and_logs_every_loss(settings, losses):
    model = tiny_cut(**settings)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    run = trainer(fast_dev_run=1)
    run.fit(model, loader(1))
    assert run.global_step == 2  # a D step and a G step
    for prefix in ("netG.", "netD.", "netF."):
        changed = [
            k for k, v in model.state_dict().items() if k.startswith(prefix) and not torch.equal(v, before[k])
        ]
        assert changed, prefix
    logged = {key[len("train/") : -len("_step")] for key in run.callback_metrics if key.endswith("_step")}
    assert logged == losses
    assert all(math.isfinite(run.callback_metrics[f"train/{name}_step"].item()) for name in losses)


def test_netf_is_in_the_generator_optimizer_from_the_start():
    model = tiny_cut()
    optimizers, _ = model.configure_optimizers()
    g_params = {id(p) for group in optimizers[0].param_groups for p in group["params"]}
    assert {id(p) for p in model.netF.parameters()} <= g_params
    assert {id(p) for p in model.netG.parameters()} <= g_params
    assert [p for p in model.netD.parameters()] == optimizers[1].param_groups[0]["params"]
    assert len(model.netF.mlps) == len(LAYERS)
    assert [mlp[0].in_features for mlp in model.netF.mlps] == [3, 8, 16, 16]


def test_discriminator_steps_first_and_the_generator_loss_uses_the_updated_discriminator():
    """The reference's order: D(real), D(fake) before D's step; D(G(A)) for G's loss after it."""
    model = tiny_cut()
    seen: list[torch.Tensor] = []
    model.netD.register_forward_hook(  # one entry per image judged (real and fake may share a call)
        lambda module, args, _o: seen.extend([module.model[0].weight.detach().clone()] * len(args[0]))
    )
    trainer(fast_dev_run=1).fit(model, loader(1))
    assert len(seen) == 3
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    assert torch.equal(seen[2], model.netD.model[0].weight)  # no D step after G's


def test_fastcut_flips_from_the_modules_generator_and_repeats_with_its_seed():
    """Half of the iterations G translates the mirrored input, and the keys then come from an extra
    feature pass over the unmirrored input; which iterations follows ``pool_seed``."""

    def flips(seed: int) -> list[bool]:
        model = tiny_cut(**FASTCUT, pool_seed=seed)
        data = loader(8)
        calls: list[tuple[torch.Tensor, bool]] = []  # (input, encode_only) of every netG call
        model.netG.register_forward_hook(
            lambda _m, args, kwargs, _o: calls.append((args[0].detach(), bool(kwargs.get("encode_only")))),
            with_kwargs=True,
        )
        trainer(max_epochs=1).fit(model, data)
        starts = [index for index, (_, encode_only) in enumerate(calls) if not encode_only]
        pattern = []
        for batch, begin, end in zip(data, starts, [*starts[1:], len(calls)], strict=True):
            real_A, translated = batch["A"], calls[begin][0]
            flipped = torch.equal(translated, real_A.flip(3))
            assert flipped or torch.equal(translated, real_A)
            source_passes = sum(torch.equal(x, real_A) for x, _ in calls[begin + 1 : end])
            assert source_passes == int(flipped)
            pattern.append(flipped)
        return pattern

    first = flips(1)
    assert 0 < sum(first) < len(first)
    assert flips(1) == first
    assert flips(2) != first


def test_flipped_queries_are_mirrored_back_before_the_comparison():
    """At layer 0 (the reflection-padded input, which commutes with mirroring) a mirrored translation
    compared with flipped=True scores exactly as the unmirrored one."""
    model = tiny_cut(**FASTCUT, nce_layers=[0])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        fakes, features = model.netG(x, layers=[0])
        plain = model.patch_nce(features, fakes, torch.Generator().manual_seed(0))
        mirrored = model.patch_nce(features, fakes.flip(3), torch.Generator().manual_seed(0), flipped=True)
        unaligned = model.patch_nce(features, fakes.flip(3), torch.Generator().manual_seed(0))
    torch.testing.assert_close(mirrored, plain)
    assert not torch.allclose(unaligned, plain)


def test_bf16_mixed_channels_last_and_compile_train_with_finite_losses():
    model = tiny_cut(channels_last=True, compile={"backend": "aot_eager"})
    run = trainer(fast_dev_run=2, precision="bf16-mixed")
    run.fit(model, loader(2))
    assert math.isfinite(run.callback_metrics["train/G_step"].item())
    assert math.isfinite(run.callback_metrics["train/NCE_step"].item())
    assert "netG.model.1.weight" in model.state_dict()


def test_validation_and_test_log_patch_nce_repeatably():
    model = tiny_cut()
    run = trainer(max_epochs=1, limit_train_batches=1)
    run.fit(model, loader(1), val_dataloaders=loader(2))
    assert "val/nce" in run.callback_metrics
    state = model.rng.get_state()
    first = run.test(model, loader(2), verbose=False)[0]["test/nce"]
    assert run.test(model, loader(2), verbose=False)[0]["test/nce"] == first
    assert torch.equal(model.rng.get_state(), state)  # evaluation leaves the training draws alone


def test_checkpoint_names_the_model_and_its_one_generator(tmp_path):
    model = tiny_cut()
    run = trainer(max_epochs=1, default_root_dir=tmp_path)
    run.fit(model, loader(1))
    path = tmp_path / "cut.ckpt"
    run.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint[MODEL_KEY] == {"class": "CUT", "generators": {"AtoB": "netG"}}
    assert len(checkpoint["optimizer_states"][0]["state"]) == len(list(model.netG.parameters())) + len(
        list(model.netF.parameters())
    )
    assert checkpoint["hyper_parameters"]["nce_layers"] == LAYERS


@pytest.mark.parametrize(
    ("generator", "settings", "message"),
    [
        ({"arch": "unet", "num_downs": 5, "ngf": 4}, {}, "generator arch=unet is not a ResNet generator"),
        (GEN, {"nce_layers": [0, 4, 40]}, r"nce_layers=\[0, 4, 40\]: feature layers must be .*\(0 to 19\)"),
        ({**GEN, "output_nc": 1}, {}, r"generator input_nc must equal output_nc=1: CUT runs .*, got 3"),
        (GEN, {"num_patches": 0}, "num_patches must be an integer >= 1"),
        (GEN, {"lambda_NCE": -1.0}, "lambda_NCE must be >= 0"),
        (GEN, {"flip_equivariance": "yes"}, "flip_equivariance must be true or false"),
        (GEN, {"gan_mode": "wgan"}, "gan_mode must be one of"),
    ],
)
def test_bad_settings_are_clear_errors(generator, settings, message):
    with pytest.raises(ValueError, match=message):
        CUT(generator, DISC, **{"nce_layers": LAYERS, **settings})
