"""The CycleGAN training step: training settings compared on a GPU, and the Lightning framework's overhead.

GPU mode (CUDA present; issue 12). resnet_9blocks + 70x70 PatchGAN at 256x256, batch 1 and 8, trained by
the Lightning Trainer as cyclegan-train runs it (in-memory batches: the data pipeline has its own
benchmark), for these settings:

- ``reference``: the fp32 eager reference-equivalent: the reference's parameter layout (conv biases,
  InstanceNorm without affine), ``torch.nn.functional.instance_norm`` (what the reference's
  ``nn.InstanceNorm2d`` runs) followed by in-place activations and a separate residual add, fp32 (cuDNN
  convolutions in TF32, PyTorch's default, as the reference gets), NCHW, no compilation;
- ``fastest``: our layout with the fused Triton InstanceNorm(+activation+residual) kernels, bf16-mixed,
  channels_last, ``torch.compile`` of the four networks;
- ``bf16_eager``: ``fastest`` without compilation (what compilation adds).

Each run reports images/s over the timed iterations (after warm-up iterations that include compilation
and cuDNN autotuning) and the peak CUDA memory allocated. ``summary`` holds, per batch size,
``speedup_vs_reference`` and ``peak_memory_ratio`` of ``fastest`` and the setting with the most images/s.
Each run is isolated: one that raises is recorded under ``errors`` and the others go on; the JSON is
rewritten after every run, so a run cut short keeps what was measured.

CPU mode (no CUDA): Lightning Trainer + CycleGAN module against a bare PyTorch loop doing the same work
(same networks, losses, image pools, optimizers, discriminator freezing, non-finite check, per-epoch loss
sums, in-memory batches), back-to-back pairs in one run; overhead = median over pairs of bare /
Lightning - 1 (robust to a shared machine's speed drifting between pairs).

    python benchmarks/train_step.py                          # GPU: settings; CPU: framework overhead
    python benchmarks/train_step.py --iters 50 --repeats 5   # CPU overhead, longer
    python benchmarks/train_step.py --dry-run --output X.json  # GPU mode's code, tiny, on any device

``--dry-run`` runs the GPU mode's settings with tiny networks on whatever device is present (without
CUDA, compilation uses the ``aot_eager`` backend: inductor's C++ build would take minutes); its figures
are not measurements and it writes only where ``--output`` says. Real runs write
benchmarks/results/train_step.json unless ``--output`` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cyclegan.model import CycleGAN, GANLoss, ImagePool
from cyclegan.nn import InstanceNorm2d

RESULTS = Path(__file__).resolve().parent / "results" / "train_step.json"

# Settings: precision, memory format, compilation, parameter layout, which InstanceNorm runs.
FP32_EAGER = {
    "name": "fp32_eager",
    "precision": "32-true",
    "channels_last": False,
    "compile": False,
    "layout": "seed",
    "instance_norm": "ours",
}
REFERENCE = {**FP32_EAGER, "name": "reference", "layout": "reference", "instance_norm": "native"}
BF16_EAGER = {**FP32_EAGER, "name": "bf16_eager", "precision": "bf16-mixed", "channels_last": True}
FASTEST = {**BF16_EAGER, "name": "fastest", "compile": True}

# GPU mode: the figures issue 12 asks for first, so that a run cut short still has them.
GPU_RUNS = [(REFERENCE, 1), (FASTEST, 1), (REFERENCE, 8), (FASTEST, 8), (BF16_EAGER, 1), (BF16_EAGER, 8)]
GPU_SIZES = {"crop": 256, "ngf": 64, "ndf": 64, "n_blocks": 9}
TINY_SIZES = {"crop": 32, "ngf": 8, "ndf": 8, "n_blocks": 2}
CPU_OVERHEAD_SIZES = {"crop": 64, "ngf": 16, "ndf": 16, "n_blocks": 3}
GOAL = "fastest: speedup_vs_reference >= 2.5 and peak_memory_ratio <= 0.6 at batch 1 and 8"


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


class NativeInstanceNorm(nn.Module):
    """The reference's InstanceNorm in place of ours: ``F.instance_norm`` (what ``nn.InstanceNorm2d`` runs),
    then the activation in place and the residual add, each its own op as in the reference's layers."""

    def __init__(self, norm: InstanceNorm2d) -> None:
        super().__init__()
        self.eps, self.activation, self.negative_slope = norm.eps, norm.activation, norm.negative_slope
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        y = F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        if self.activation == "relu":
            y = F.relu(y, inplace=True)
        elif self.activation == "leaky_relu":
            y = F.leaky_relu(y, self.negative_slope, inplace=True)
        return y if residual is None else y + residual


def use_native_instance_norm(net: nn.Module) -> None:
    """Replace every InstanceNorm2d of ``net`` by a NativeInstanceNorm holding the same parameters."""
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, InstanceNorm2d):
                setattr(module, name, NativeInstanceNorm(child))


def compile_argument(setting: dict[str, Any]) -> bool | dict[str, str]:
    """CycleGAN's ``compile`` for a setting: inductor on CUDA; without CUDA the ``aot_eager`` backend, which
    traces the same graphs (dynamo + AOTAutograd) without inductor's minutes-long C++ build."""
    if not setting["compile"]:
        return False
    return True if torch.cuda.is_available() else {"backend": "aot_eager"}


def build_model(setting: dict[str, Any], sizes: dict[str, int], seed: int = 0) -> CycleGAN:
    """The CycleGAN module of a setting with weights drawn from ``seed`` (the same for every setting); the
    module's image-pool generator follows the same seed."""
    torch.manual_seed(seed)
    layout = setting["layout"]
    model = CycleGAN(
        {"arch": "resnet", "n_blocks": sizes["n_blocks"], "ngf": sizes["ngf"], "layout": layout},
        {"arch": "basic", "ndf": sizes["ndf"], "layout": layout},
        channels_last=setting["channels_last"],
        compile=compile_argument(setting),
    )
    if setting["instance_norm"] == "native":
        for net in (model.netG_A, model.netG_B, model.netD_A, model.netD_B):
            use_native_instance_norm(net)
    return model


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
    cuda = torch.cuda.is_available()
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision=setting["precision"],
        benchmark=cuda,  # cuDNN autotuning, as trainer=gpu (and the reference) run
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


def measure_overhead(setting: dict, sizes: dict, warmup: int, iters: int, repeats: int) -> dict[str, Any]:
    """CPU mode: Lightning against the bare loop, ``repeats`` back-to-back pairs."""
    dataset = SyntheticPairs(warmup + iters, sizes["crop"])
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=0)
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


def measure_setting(setting: dict, sizes: dict, batch_size: int, warmup: int, iters: int) -> dict[str, Any]:
    """GPU mode: images/s and peak memory of one setting at one batch size, through the Trainer."""
    torch._dynamo.reset()  # a fresh, static compile per run (dynamo would make the batch size dynamic)
    loader = DataLoader(
        SyntheticPairs((warmup + iters) * batch_size, sizes["crop"]),
        batch_size=batch_size,
        shuffle=False,
        num_workers=0,
        pin_memory=torch.cuda.is_available(),
    )
    gc.collect()  # the previous run's model, optimizer states and activations
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    images_per_s = lightning_images_per_s(loader, setting, sizes, warmup, iters)
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {
        "setting": setting,
        "batch_size": batch_size,
        "images_per_s": round(images_per_s, 3),
        "peak_memory_mib": None if peak is None else round(peak, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per batch size: ``fastest`` against ``reference`` (images/s and peak memory), and the best setting."""
    summary: dict[str, Any] = {}
    for batch_size in sorted({run["batch_size"] for run in runs}):
        by_name = {run["setting"]["name"]: run for run in runs if run["batch_size"] == batch_size}
        entry: dict[str, Any] = {}
        reference, fastest = by_name.get("reference"), by_name.get("fastest")
        if reference and fastest:
            entry["speedup_vs_reference"] = round(fastest["images_per_s"] / reference["images_per_s"], 3)
            if reference["peak_memory_mib"]:
                entry["peak_memory_ratio"] = round(
                    fastest["peak_memory_mib"] / reference["peak_memory_mib"], 3
                )
        best = max(by_name.values(), key=lambda run: run["images_per_s"])
        entry["best_setting"] = best["setting"]["name"]
        if reference:
            entry["best_speedup_vs_reference"] = round(best["images_per_s"] / reference["images_per_s"], 3)
        summary[f"batch_{batch_size}"] = entry
    return summary


def environment() -> dict[str, Any]:
    """Date, device and versions every report carries."""
    cuda = torch.cuda.is_available()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name()
        if cuda
        else f"CPU ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "python": sys.version.split()[0],
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32 if cuda else None,
    }


def networks_text(sizes: dict[str, int]) -> str:
    return f"resnet G (ngf {sizes['ngf']}, {sizes['n_blocks']} blocks), PatchGAN D (ndf {sizes['ndf']})"


def write(report: dict[str, Any], output: Path | None) -> None:
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n")


def run_label(setting: dict[str, Any], batch_size: int) -> str:
    return f"{setting['name']}@{batch_size}"


def compare_settings(
    dry_run: bool, warmup: int, iters: int, output: Path | None, only: list[str] | None = None
) -> dict[str, Any]:
    """GPU mode (or its dry run): the runs of GPU_RUNS (those named in ``only``), the JSON rewritten after
    each. A dry run uses batch 2 where the GPU mode uses 8."""
    sizes = TINY_SIZES if dry_run else GPU_SIZES
    runs = [(s, b) for s, b in GPU_RUNS if only is None or run_label(s, b) in only]
    if dry_run:
        runs = [(setting, min(batch_size, 2)) for setting, batch_size in runs]
    report: dict[str, Any] = {
        "benchmark": "train_step",
        "mode": "dry run (tiny networks, not a measurement)" if dry_run else "gpu settings",
        **environment(),
        "networks": networks_text(sizes),
        "crop": sizes["crop"],
        "warmup_iterations": warmup,
        "timed_iterations": iters,
        "goal": GOAL,
        "runs": [],
        "errors": [],
        "summary": {},
    }
    for setting, batch_size in runs:
        try:
            report["runs"].append(measure_setting(setting, sizes, batch_size, warmup, iters))
        except Exception as error:  # one failing setting must not cost the others their figures
            traceback.print_exc()
            message = f"{type(error).__name__}: {error}".splitlines()[0][:500]
            report["errors"].append({"setting": setting["name"], "batch_size": batch_size, "error": message})
        report["summary"] = summarize(report["runs"])
        write(report, output)
        print(json.dumps(report["runs"][-1] if report["runs"] else report["errors"][-1]), file=sys.stderr)
    return report


def compare_with_bare_loop(warmup: int, iters: int, repeats: int, output: Path | None) -> dict[str, Any]:
    """CPU mode: the framework overhead of the fp32 eager setting."""
    sizes = CPU_OVERHEAD_SIZES
    report = {
        "benchmark": "train_step",
        "mode": "cpu framework overhead",
        **environment(),
        "networks": networks_text(sizes),
        "crop": sizes["crop"],
        "batch_size": 1,
        "warmup_iterations": warmup,
        "timed_iterations": iters,
        "repeats": repeats,
        "goal": "overhead_percent <= 5",
        "results": [measure_overhead(FP32_EAGER, sizes, warmup, iters, repeats)],
    }
    write(report, output)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=None, help="timed iterations per run")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed iterations first (compile, autotune)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="CPU overhead mode: Lightning/bare pairs")
    parser.add_argument("--dry-run", action="store_true", help="GPU mode's settings, tiny, on any device")
    parser.add_argument(
        "--runs",
        default=None,
        help="GPU mode: only these comma-separated runs, e.g. fastest@8,bf16_eager@1 (default: all of "
        + ", ".join(run_label(s, b) for s, b in GPU_RUNS)
        + ")",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"JSON to write (default {RESULTS.relative_to(RESULTS.parents[2])}; a dry run: none)",
    )
    args = parser.parse_args(argv)
    only = None if args.runs is None else args.runs.split(",")
    known = {run_label(s, b) for s, b in GPU_RUNS}
    if only is not None and not set(only) <= known:
        parser.error(f"--runs: unknown {sorted(set(only) - known)}; choose from {sorted(known)}")
    if only is not None and not (args.dry_run or torch.cuda.is_available()):
        parser.error("--runs picks GPU-mode runs: it needs CUDA or --dry-run")
    output = args.output if args.output is not None or args.dry_run else RESULTS
    pl.seed_everything(0, verbose=False)
    if args.dry_run:
        report = compare_settings(True, args.warmup or 1, args.iters or 2, output, only)
    elif torch.cuda.is_available():
        report = compare_settings(False, args.warmup or 5, args.iters or 20, output, only)
    else:
        report = compare_with_bare_loop(args.warmup or 5, args.iters or 60, args.repeats, output)
    print(json.dumps(report, indent=2))
    return 1 if report.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
