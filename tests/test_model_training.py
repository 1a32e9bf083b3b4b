"""Real Trainer runs of the CycleGAN module with tiny networks: losses, freezing, precision, non-finite."""

import math

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.plugins.precision import MixedPrecision
from torch.utils.data import DataLoader

from cyclegan.data import UnpairedImageDataModule
from cyclegan.model import CycleGAN, NonFiniteLossError

GEN = {"arch": "resnet", "n_blocks": 1, "ngf": 4, "init_type": "normal", "init_gain": 0.02}
DISC = {"arch": "basic", "ndf": 4}
LOSS_KEYS = {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "G", "D_A", "D_B"}


def tiny_model(**settings):
    return CycleGAN(GEN, DISC, **{"pool_size": 2, **settings})


def loader(count=2, size=32, a_channels=3, b_channels=3, poison=()):
    """An in-memory DataLoader over a list of batch dicts; batches listed in ``poison`` hold NaN in A."""
    generator = torch.Generator().manual_seed(0)
    data = []
    for index in range(count):
        a = torch.rand(1, a_channels, size, size, generator=generator) * 2 - 1
        b = torch.rand(1, b_channels, size, size, generator=generator) * 2 - 1
        if index in poison:
            a[:] = float("nan")
        data.append({"A": a, "B": b, "A_paths": [f"a{index}.png"], "B_paths": [f"b{index}.png"]})
    return DataLoader(data, batch_size=None)


def trainer(**settings):
    defaults = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return pl.Trainer(**{**defaults, **settings})


def train_keys(metrics, suffix="_step"):
    """Loss names logged as ``train/<name><suffix>``."""
    return {
        key[len("train/") : -len(suffix)]
        for key in metrics
        if key.startswith("train/") and key.endswith(suffix)
    }


@pytest.mark.parametrize("gan_mode", ["lsgan", "vanilla", "wgangp", "hinge"])
def test_fast_dev_run_trains_all_four_networks(gan_mode):
    model = tiny_model(gan_mode=gan_mode)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    run = trainer(fast_dev_run=2)
    run.fit(model, loader(2))
    assert run.global_step == 2  # fast_dev_run=2 means 2 optimizer steps: one G step and one D step
    metrics = run.callback_metrics
    assert train_keys(metrics) == LOSS_KEYS
    assert all(math.isfinite(value.item()) for value in metrics.values())
    assert metrics["lr/G"].item() == pytest.approx(2e-4)
    after = model.state_dict()
    for net in ("netG_A", "netG_B", "netD_A", "netD_B"):
        names = [name for name in before if name.startswith(f"{net}.")]
        assert any(not torch.equal(before[name], after[name]) for name in names), f"{net} did not train"


def test_images_per_second_is_logged_from_the_second_iteration():
    run = trainer(max_steps=4, log_every_n_steps=1)
    run.fit(tiny_model(), loader(2))
    assert run.callback_metrics["train/images_per_sec"].item() > 0


class CountImages:
    """How many images a module's forward calls have taken (calls may batch several passes)."""

    def __init__(self, module):
        self.count = 0
        module.register_forward_hook(lambda _, args, _output: self.add(len(args[0])))

    def add(self, images):
        self.count += images


@pytest.mark.parametrize(("lambda_identity", "images_per_generator"), [(0.5, 3), (0.0, 2)])
def test_identity_loss_off_skips_its_generator_passes(lambda_identity, images_per_generator):
    model = tiny_model(lambda_identity=lambda_identity)
    counts = [CountImages(model.netG_A), CountImages(model.netG_B)]
    run = trainer(fast_dev_run=2)
    run.fit(model, loader(1))
    assert [count.count for count in counts] == [images_per_generator] * 2
    logged = train_keys(run.callback_metrics)
    assert ("idt_A" in logged) == (lambda_identity > 0)
    assert ("idt_B" in logged) == (lambda_identity > 0)


def test_training_without_an_image_pool():
    """pool_size 0: the discriminators judge the iteration's own fakes, which must come detached."""
    model = tiny_model(pool_size=0)
    run = trainer(max_steps=4)
    run.fit(model, loader(2))
    assert run.global_step == 4 and model.nonfinite_total == 0


def test_identity_loss_needs_equal_channel_counts():
    with pytest.raises(ValueError, match="needs input_nc == output_nc"):
        CycleGAN({**GEN, "input_nc": 1, "output_nc": 3}, DISC)


def test_grayscale_to_rgb_trains_without_identity():
    model = CycleGAN({**GEN, "input_nc": 1, "output_nc": 3}, DISC, lambda_identity=0.0)
    assert model.netD_A.model[0].in_channels == 3  # judges domain B (G_A's outputs)
    assert model.netD_B.model[0].in_channels == 1  # judges domain A
    run = trainer(fast_dev_run=2)
    run.fit(model, loader(1, a_channels=1, b_channels=3))
    assert math.isfinite(run.callback_metrics["train/G_step"].item())


def test_wrong_batch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"batch\['B'\] must be a \(batch, 3, H, W\) tensor"):
        trainer(fast_dev_run=2).fit(tiny_model(), loader(1, b_channels=1))


class GradientProbe(pl.Callback):
    """Records, at every optimizer step, which networks hold gradients and whether D was trainable."""

    def __init__(self):
        self.steps = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        def has_grad(net):
            return any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())

        is_g_step = optimizer is trainer.optimizers[0]
        self.steps.append(
            {
                "G": is_g_step,
                "G_grads": has_grad(pl_module.netG_A) and has_grad(pl_module.netG_B),
                "D_grads": has_grad(pl_module.netD_A) or has_grad(pl_module.netD_B),
                "D_trainable_calls": list(pl_module.d_trainable_at_call),
            }
        )
        pl_module.d_trainable_at_call.clear()


def test_discriminators_are_frozen_and_get_no_gradient_in_the_generator_step():
    model = tiny_model()
    model.d_trainable_at_call = []
    for net in (model.netD_A, model.netD_B):
        # one entry per image: the discriminator loss judges real and fake images in one call
        net.register_forward_hook(
            lambda module, args, _: model.d_trainable_at_call.extend(
                [any(p.requires_grad for p in module.parameters())] * len(args[0])
            )
        )
    probe = GradientProbe()
    trainer(fast_dev_run=2, callbacks=[probe]).fit(model, loader(1))
    g_step, d_step = probe.steps
    assert g_step["G"] and g_step["G_grads"] and not g_step["D_grads"]
    # Both losses are computed before the first step (one finiteness check): the generator loss's two
    # discriminator calls see D frozen, the discriminator loss's four (real and fake per D) see it trainable.
    assert g_step["D_trainable_calls"] == [False, False, True, True, True, True]
    assert not d_step["G"] and d_step["D_grads"]
    assert d_step["D_trainable_calls"] == []
    assert all(p.requires_grad for p in model.parameters())  # untoggled afterwards


def test_bf16_mixed_precision_on_cpu():
    run = trainer(fast_dev_run=2, precision="bf16-mixed")
    run.fit(tiny_model(gan_mode="wgangp"), loader(1))
    assert train_keys(run.callback_metrics) == LOSS_KEYS
    assert all(math.isfinite(value.item()) for value in run.callback_metrics.values())


@pytest.mark.parametrize(("init_scale", "steps_taken"), [(2.0**8, True), (2.0**100, False)])
def test_fp16_grad_scaler_steps_and_survives_overflowing_steps(init_scale, steps_taken):
    """16-mixed through a real GradScaler (Lightning picks none on CPU, so the plugin is given): with an
    overflowing scale the scaler skips both optimizer steps, lowers the scale, and training goes on."""
    model = tiny_model(gradient_clip_val=1.0)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=init_scale))
    run = trainer(max_steps=4, plugins=[plugin])
    run.fit(model, loader(2))
    changed = any(not torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert changed == steps_taken
    assert (plugin.scaler.get_scale() < init_scale) == (not steps_taken)
    assert model.nonfinite_total == 0  # the losses were finite; only the scaled gradients overflowed


class RecordClippedNorm(CycleGAN):
    """Records the gradient norm each optimizer is about to step with, after the module's clipping."""

    clipped_norms: list

    def on_before_optimizer_step(self, optimizer):
        super().on_before_optimizer_step(optimizer)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.clipped_norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())


@pytest.mark.parametrize(
    ("clip", "precision"), [(1e-3, "32"), (None, "32"), (1e-3, "16-mixed"), (1e-3, "bf16-mixed")]
)
def test_gradient_clipping_bounds_each_step_norm(clip, precision):
    """Unclipped norms here are far above 1e-3, so clipped steps sit at 1e-3; under 16-mixed this holds
    only if clipping sees the unscaled gradients."""
    model = RecordClippedNorm(GEN, DISC, gradient_clip_val=clip)
    model.clipped_norms = []
    if precision == "16-mixed":
        settings = {
            "plugins": [MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=2.0**8))]
        }
    else:
        settings = {"precision": precision}
    trainer(max_steps=4, **settings).fit(model, loader(2))
    assert len(model.clipped_norms) == 4
    if clip is None:
        assert min(model.clipped_norms) > 1e-2
    else:
        assert model.clipped_norms == pytest.approx([clip] * 4, rel=1e-3)


def test_nonfinite_loss_skips_the_step_and_a_finite_one_resets_the_count():
    model = tiny_model(max_consecutive_nonfinite=2, pool_seed=0)
    before = {name: tensor.clone() for name, tensor in model.netG_A.state_dict().items()}
    run = trainer(max_epochs=1, limit_train_batches=1)
    run.fit(model, loader(1, poison=(0,)))
    assert run.global_step == 0  # neither optimizer stepped
    assert all(torch.equal(before[name], tensor) for name, tensor in model.netG_A.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert model.nonfinite_total == 1 and model.nonfinite_consecutive == 1
    assert run.callback_metrics["train/nonfinite_skipped"].item() == 1

    run = trainer(max_epochs=1)
    run.fit(model, loader(3, poison=(1,)))  # finite (resets the count), NaN, finite
    assert model.nonfinite_total == 2 and model.nonfinite_consecutive == 0


class PoolRecorder(pl.Callback):
    """After each iteration: the images of both pools and the module's generator state."""

    def __init__(self):
        self.after = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        pools = (pl_module.fake_A_pool, pl_module.fake_B_pool)
        self.after.append(([list(pool.images) for pool in pools], pl_module.rng.get_state()))


def test_a_skipped_iteration_leaves_the_image_pools_and_their_generator_as_they_were():
    model = tiny_model(pool_size=2, pool_seed=0, max_consecutive_nonfinite=None)
    recorder = PoolRecorder()
    trainer(max_epochs=1, callbacks=[recorder]).fit(model, loader(4, poison=(2,)))
    assert model.nonfinite_total == 1
    (pools_before, rng_before), (pools_after, rng_after) = recorder.after[1:3]  # around the NaN batch
    assert all(len(images) == 2 for images in pools_before)  # full: a swap could have taken a NaN fake
    for before, after in zip(pools_before, pools_after, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True))
    assert torch.equal(rng_before, rng_after)
    for pools, _ in recorder.after:
        assert all(torch.isfinite(image).all() for images in pools for image in images)


def test_one_nonfinite_batch_does_not_poison_the_later_iterations():
    """Before the fix the NaN fakes of the first batch filled the pools and every later draw of them made
    the discriminator loss NaN again."""
    model = tiny_model(pool_size=1, pool_seed=0, max_consecutive_nonfinite=None)
    trainer(max_epochs=1).fit(model, loader(6, poison=(0,)))
    assert model.nonfinite_total == 1 and model.nonfinite_consecutive == 0


def test_nonfinite_loss_under_fp16_is_skipped_by_the_scaler_and_counted():
    model = tiny_model(gan_mode="wgangp", max_consecutive_nonfinite=2)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=2.0**8))
    run = trainer(max_epochs=1, plugins=[plugin])
    run.fit(model, loader(1, poison=(0,)))
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert plugin.scaler.get_scale() < 2.0**8  # the scaler saw the non-finite gradients and backed off
    assert model.nonfinite_total == 1
    with pytest.raises(NonFiniteLossError):
        trainer(max_epochs=1, plugins=[plugin]).fit(model, loader(1, poison=(0,)))


def test_consecutive_nonfinite_losses_stop_the_run_with_the_last_good_weights():
    model = tiny_model(max_consecutive_nonfinite=3)
    good_weights = {}

    class Snapshot(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 0:
                good_weights.update({k: v.clone() for k, v in pl_module.state_dict().items()})

    run = trainer(max_epochs=1, callbacks=[Snapshot()])
    with pytest.raises(NonFiniteLossError, match="3 training iterations in a row had a non-finite loss"):
        run.fit(model, loader(5, poison=(1, 2, 3)))
    assert model.nonfinite_consecutive == 3
    assert run.global_step == 2  # only the first, finite iteration stepped
    assert all(torch.equal(good_weights[k], v) for k, v in model.state_dict().items())


def test_channels_last_and_compiled_networks_keep_the_state_dict_keys():
    model = tiny_model(channels_last=True, compile={"backend": "aot_eager"})
    assert model.netG_A.model[1].weight.is_contiguous(memory_format=torch.channels_last)
    run = trainer(fast_dev_run=2)
    run.fit(model, loader(1))
    assert math.isfinite(run.callback_metrics["train/G_step"].item())
    assert "netG_A.model.1.weight" in model.state_dict()


def test_validation_and_test_log_cycle_losses():
    model = tiny_model()
    run = trainer(max_epochs=1, limit_train_batches=1)
    run.fit(model, loader(1), val_dataloaders=loader(2))
    assert {"val/cycle_A", "val/cycle_B", "val/cycle"} <= set(run.callback_metrics)
    results = run.test(model, loader(2), verbose=False)
    value = results[0]["test/cycle"]
    assert value == pytest.approx((results[0]["test/cycle_A"] + results[0]["test/cycle_B"]) / 2, rel=1e-5)


def write_images(folder, count, size, color):
    folder.mkdir(parents=True)
    for index in range(count):
        Image.new("RGB", (size, size), (color, (40 * index) % 256, 128)).save(folder / f"{index}.png")


def test_training_on_the_unpaired_image_datamodule(tmp_path):
    for split, count in (("trainA", 3), ("trainB", 2), ("testA", 2), ("testB", 2)):
        write_images(tmp_path / split, count, 40, 200 if split.endswith("A") else 30)
    data = UnpairedImageDataModule(
        str(tmp_path),
        load_size=36,
        crop_size=32,
        batch_size=2,
        num_workers=0,
        seed=0,
        persistent_workers=False,
    )
    run = trainer(max_epochs=1)
    run.fit(tiny_model(), datamodule=data)
    assert run.global_step == 2 * 2  # 3 images at batch size 2: 2 iterations
    assert train_keys(run.callback_metrics, "_epoch") == LOSS_KEYS
    assert "val/cycle" in run.callback_metrics


def test_forward_together_matches_separate_calls_for_instance_norm_networks():
    """One batched call gives each image what its own call gives (InstanceNorm statistics are per image)."""
    model = tiny_model()
    generator = torch.Generator().manual_seed(1)
    images = [torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1 for _ in range(3)]
    calls = CountImages(model.netG_A)
    hook_calls = []
    model.netG_A.register_forward_hook(lambda *_: hook_calls.append(1))
    together = model.forward_together(model.netG_A, *images)
    assert len(hook_calls) == 1 and calls.count == 3
    for image, output in zip(images, together, strict=True):
        torch.testing.assert_close(output, model.netG_A(image), rtol=1e-5, atol=1e-5)


def test_forward_together_calls_one_by_one_with_batchnorm_or_mixed_shapes():
    """BatchNorm statistics would mix the images, and images of different sizes cannot share a batch."""
    batchnorm = CycleGAN({**GEN, "norm": "batch"}, DISC)
    instance = tiny_model()
    generator = torch.Generator().manual_seed(2)
    same = [torch.rand(1, 3, 32, 32, generator=generator) for _ in range(2)]
    mixed = [torch.rand(1, 3, 32, 32, generator=generator), torch.rand(1, 3, 48, 32, generator=generator)]
    for model, images in ((batchnorm, same), (instance, mixed)):
        calls = []
        model.netG_A.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        outputs = model.forward_together(model.netG_A, *images)
        assert len(calls) == 2
        assert [output.shape for output in outputs] == [image.shape for image in images]


@pytest.mark.parametrize(("clip", "fused"), [(None, True), (1.0, None)])
def test_adam_runs_fused_unless_gradients_are_clipped(clip, fused):
    optimizers, _ = tiny_model(gradient_clip_val=clip).configure_optimizers()
    assert [opt.defaults["fused"] for opt in optimizers] == [fused, fused]
