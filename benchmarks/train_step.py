"""Framework overhead of a CycleGAN training step: Lightning Trainer + CycleGAN module against a bare
PyTorch loop doing the same work, in one run.

Both sides train the same networks (built by cyclegan.model.CycleGAN with one seed), with the same
losses (cyclegan.model.GANLoss, L1 cycle and identity), the same image pools, the same two Adam
optimizers, the same D-freezing during the G step, the same non-finite-loss check (both losses in one
tensor, one sync per iteration, before either step), the same per-epoch loss sums and the same
in-memory batches through a DataLoader (no workers, no decoding: the data pipeline has its own
benchmark). The Lightning side runs as cyclegan-train would, minus file output (no logger, no
checkpoints, no image grids, no progress bar): manual optimization, self.log of the losses at the
Trainer's logging steps (log_every_n_steps, 50 by default), callback hooks. Throughput is measured
over the iterations after a warm-up; the two sides run in back-to-back pairs, and the overhead reported
is the median over pairs of bare / Lightning - 1 (robust to a shared machine's speed drifting between
pairs).

    python benchmarks/train_step.py            # CPU: small networks and crops
    python benchmarks/train_step.py --iters 50 --repeats 5

With CUDA: resnet_9blocks + 70x70 PatchGAN at 256x256, batch 1, for two settings: fp32 eager, and the
fastest (bf16-mixed, channels_last, torch.compile of the networks). Prints JSON and writes
benchmarks/results/train_step.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cyclegan.model import CycleGAN, GANLoss, ImagePool

RESULTS = Path(__file__).resolve().parent / "results" / "train_step.json"


class SyntheticPairs(Dataset):
    """Fixed random A/B images in [-1, 1], built once: the loop times the model, not the data."""

    def __init__(self, count: int, size: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.A = torch.rand((count, 3, size, size), generator=generator) * 2 - 1
        self.B = torch.rand((count, 3, size, size), generator=generator) * 2 - 1

    def __len__(self) -> int:
        return len(self.A)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"A": self.A[index], "B": self.B[index]}


def build_model(setting: dict[str, Any], sizes: dict[str, int]) -> CycleGAN:
    torch.manual_seed(0)
    return CycleGAN(
        {"arch": "resnet", "n_blocks": sizes["n_blocks"], "ngf": sizes["ngf"]},
        {"arch": "basic", "ndf": sizes["ndf"]},
        channels_last=setting["channels_last"],
        compile=setting["compile"],
        image_log_every_n_steps=0,
    )


class Throughput(pl.Callback):
    """Wall time from the end of the warm-up iterations to the end of the last one."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = 0.0
        self.timed = 0

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        _synchronize()
        if trainer.fit_loop.total_batch_idx + 1 == self.warmup:
            self.start = time.perf_counter()
        elif trainer.fit_loop.total_batch_idx + 1 > self.warmup:
            self.end = time.perf_counter()
            self.timed += 1


def lightning_images_per_s(loader: DataLoader, setting: dict, sizes: dict, warmup: int, iters: int) -> float:
    model = build_model(setting, sizes)
    timer = Throughput(warmup)
    trainer = pl.Trainer(
        accelerator="gpu" if torch.cuda.is_available() else "cpu",
        devices=1,
        precision=setting["precision"],
        max_steps=2 * (warmup + iters),  # two optimizer steps per iteration
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(model, train_dataloaders=loader)
    assert timer.timed == iters, (timer.timed, iters)
    return iters * loader.batch_size / (timer.end - timer.start)


def _set_requires_grad(nets: tuple[torch.nn.Module, ...], flag: bool) -> None:
    for net in nets:
        for parameter in net.parameters():
            parameter.requires_grad_(flag)


def bare_images_per_s(loader: DataLoader, setting: dict, sizes: dict, warmup: int, iters: int) -> float:
    """The same iteration as CycleGAN.training_step, written as a plain PyTorch loop."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(setting, sizes).to(device)
    G_A, G_B, D_A, D_B = model.netG_A, model.netG_B, model.netD_A, model.netD_B
    generators, discriminators = (G_A, G_B), (D_A, D_B)
    gan_loss = GANLoss("lsgan")
    rng = torch.Generator().manual_seed(0)
    pool_A, pool_B = ImagePool(50, rng), ImagePool(50, rng)
    opt_g = torch.optim.Adam([p for net in generators for p in net.parameters()], lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(
        [p for net in discriminators for p in net.parameters()], lr=2e-4, betas=(0.5, 0.999)
    )
    memory_format = torch.channels_last if setting["channels_last"] else torch.contiguous_format
    bf16 = setting["precision"] == "bf16-mixed"
    lam_A = lam_B = 10.0
    lam_idt = 0.5

    epoch_sums = torch.zeros(9, device=device)

    def step_if_finite(optimizer: torch.optim.Optimizer, loss: torch.Tensor, finite: bool) -> None:
        if finite:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def iteration(batch: dict[str, torch.Tensor]) -> None:
        real_A = batch["A"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
        real_B = batch["B"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            _set_requires_grad(discriminators, False)
            fake_B = G_A(real_A)
            rec_A = G_B(fake_B)
            fake_A = G_B(real_B)
            rec_B = G_A(fake_A)
            idt_A = G_A(real_B)
            idt_B = G_B(real_A)
            losses_G = torch.stack(
                [
                    gan_loss(D_A(fake_B), True, for_discriminator=False),
                    gan_loss(D_B(fake_A), True, for_discriminator=False),
                    F.l1_loss(rec_A.float(), real_A.float()) * lam_A,
                    F.l1_loss(rec_B.float(), real_B.float()) * lam_B,
                    F.l1_loss(idt_A.float(), real_B.float()) * lam_B * lam_idt,
                    F.l1_loss(idt_B.float(), real_A.float()) * lam_A * lam_idt,
                ]
            )
            loss_G = losses_G.sum()
        _set_requires_grad(discriminators, True)
        _set_requires_grad(generators, False)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            pooled_B = pool_B.query(fake_B).contiguous(memory_format=memory_format)
            pooled_A = pool_A.query(fake_A).contiguous(memory_format=memory_format)
            loss_D_A = 0.5 * (gan_loss(D_A(real_B), True) + gan_loss(D_A(pooled_B), False))
            loss_D_B = 0.5 * (gan_loss(D_B(real_A), True) + gan_loss(D_B(pooled_A), False))
        loss_D = loss_D_A + loss_D_B
        g_finite, d_finite = torch.isfinite(torch.stack([loss_G.detach(), loss_D.detach()])).tolist()
        _set_requires_grad(discriminators, False)
        _set_requires_grad(generators, True)
        step_if_finite(opt_g, loss_G, g_finite)
        _set_requires_grad(discriminators, True)
        _set_requires_grad(generators, False)
        step_if_finite(opt_d, loss_D, d_finite)
        _set_requires_grad(generators, True)
        values = torch.cat(
            [losses_G.detach().float(), torch.stack([loss_G, loss_D_A, loss_D_B]).detach().float()]
        )
        epoch_sums.add_(values)

    batches = iter(loader)
    for _ in range(warmup):
        iteration(next(batches))
    _synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        iteration(next(batches))
    _synchronize()
    return iters * loader.batch_size / (time.perf_counter() - start)


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(setting: dict, sizes: dict, warmup: int, iters: int, repeats: int) -> dict[str, Any]:
    dataset = SyntheticPairs(warmup + iters, sizes["crop"])
    loader = DataLoader(
        dataset, batch_size=1, shuffle=False, num_workers=0, pin_memory=torch.cuda.is_available()
    )
    bare, framework = [], []
    for _ in range(repeats):  # alternate, so drifts of the machine's speed hit both sides alike
        bare.append(bare_images_per_s(loader, setting, sizes, warmup, iters))
        framework.append(lightning_images_per_s(loader, setting, sizes, warmup, iters))
    # each pair ran back to back, so its ratio is robust to the machine's speed drifting between pairs
    overheads = [100 * (b / f - 1) for b, f in zip(bare, framework, strict=True)]
    return {
        "setting": setting,
        "bare_images_per_s": round(statistics.median(bare), 3),
        "lightning_images_per_s": round(statistics.median(framework), 3),
        "overhead_percent": round(statistics.median(overheads), 2),
        "overhead_percent_per_pair": [round(value, 2) for value in overheads],
        "bare_runs": [round(value, 3) for value in bare],
        "lightning_runs": [round(value, 3) for value in framework],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=None, help="timed iterations per run")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if cuda:
        sizes = {"crop": 256, "ngf": 64, "ndf": 64, "n_blocks": 9}
        settings = [
            {"name": "fp32 eager", "precision": "32-true", "channels_last": False, "compile": False},
            {"name": "fastest", "precision": "bf16-mixed", "channels_last": True, "compile": True},
        ]
        warmup, iters = args.warmup or 20, args.iters or 100
    else:
        sizes = {"crop": 64, "ngf": 16, "ndf": 16, "n_blocks": 3}
        settings = [{"name": "fp32 eager", "precision": "32-true", "channels_last": False, "compile": False}]
        warmup, iters = args.warmup or 5, args.iters or 60
    pl.seed_everything(0, verbose=False)
    results = [measure(setting, sizes, warmup, iters, args.repeats) for setting in settings]
    report = {
        "benchmark": "train_step",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name()
        if cuda
        else f"CPU ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "python": sys.version.split()[0],
        "networks": (
            f"resnet G (ngf {sizes['ngf']}, {sizes['n_blocks']} blocks), PatchGAN D (ndf {sizes['ndf']})"
        ),
        "crop": sizes["crop"],
        "batch_size": 1,
        "warmup_iterations": warmup,
        "timed_iterations": iters,
        "repeats": args.repeats,
        "goal": "overhead_percent <= 5",
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
