"""CPU InstanceNorm: our op's PyTorch path against ATen's ``F.instance_norm`` + the activation (+ the
residual add), forward+backward, at every norm layer of the CycleGAN networks.

The layer shapes come from the networks themselves (forward hooks on their InstanceNorm layers, seed
layout: affine, fused ReLU / LeakyReLU(0.2) / residual, batch 1): resnet_6blocks ngf 16 + PatchGAN ndf 16
at 56x56 (the CPU recipe of issue 18) and resnet_9blocks ngf 64 + PatchGAN ndf 64 at 256x256. Each
distinct layer is timed for both sides in one run, interleaved call by call (alternating which goes
first), and reported as medians of wall-clock and of process CPU time; ``ratio`` is ours / ATen (<= 1.0 is
the goal). The network check times one resnet_6blocks ngf 16 generator forward+backward at 56x56 with our
layers against the same generator with ``torch.nn.InstanceNorm2d`` + activation modules. Everything runs
once with torch's thread count and once with one thread: on a shared, oversubscribed machine the
multi-threaded timings mostly measure waits for a core, which CPU time and a single thread do not. The
load average is recorded before and after. Prints JSON and writes benchmarks/results/instance_norm_cpu.json.

    python benchmarks/instance_norm_cpu.py
    python benchmarks/instance_norm_cpu.py --threads 2   # one thread count only
    python benchmarks/instance_norm_cpu.py --quick       # few repetitions: checks the script, writes nothing
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cyclegan.nn import InstanceNorm2d, build_discriminator, build_generator
from cyclegan.ops import instance_norm

RESULTS = Path(__file__).resolve().parent / "results" / "instance_norm_cpu.json"
# (name, generator arch, ngf, ndf, image size): the networks whose norm layers are measured
NETWORK_SETS = [
    ("recipe_56", "resnet_6blocks", 16, 16, 56),
    ("full_256", "resnet_9blocks", 64, 64, 256),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions: checks the script runs")
    parser.add_argument(
        "--threads", type=int, nargs="+", help="torch thread counts, one run each (default: torch's, then 1)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    return parser.parse_args(argv)


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def norm_layer_configs(modules: list[nn.Module], size: int) -> Counter:
    """``(shape, activation, residual)`` of every InstanceNorm call in one forward of ``modules`` (each fed
    a batch-1 image of ``size``), counted."""
    seen: Counter = Counter()

    def record(layer, args, kwargs):
        shape = tuple(args[0].shape)
        seen[(shape, layer.activation, kwargs.get("residual") is not None)] += 1

    hooks = [
        layer.register_forward_pre_hook(record, with_kwargs=True)
        for module in modules
        for layer in module.modules()
        if isinstance(layer, InstanceNorm2d)
    ]
    with torch.no_grad():
        for module in modules:
            module(torch.randn(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return seen


def layer_step(
    shape: tuple[int, ...], activation: str | None, residual: bool, ours: bool
) -> Callable[[], None]:
    """One forward+backward of a norm layer, ours or ATen's, on fresh leaf tensors (grads reset per call)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).requires_grad_()
    w = (torch.rand(shape[1], generator=gen) + 0.5).requires_grad_()
    b = torch.randn(shape[1], generator=gen).requires_grad_()
    r = torch.randn(shape, generator=gen).requires_grad_() if residual else None
    g = torch.randn(shape, generator=gen)
    leaves = [t for t in (x, w, b, r) if t is not None]

    def aten() -> torch.Tensor:
        y = F.instance_norm(x, weight=w, bias=b, eps=1e-5)
        if activation == "relu":
            y = F.relu(y)
        elif activation == "leaky_relu":
            y = F.leaky_relu(y, 0.2)
        return y + r if r is not None else y

    def fused() -> torch.Tensor:
        return instance_norm(x, w, b, activation=activation, negative_slope=0.2, residual=r)

    forward = fused if ours else aten

    def step() -> None:
        for leaf in leaves:
            leaf.grad = None
        forward().backward(g)

    return step


def time_interleaved(ours: Callable[[], None], theirs: Callable[[], None], reps: int) -> dict:
    """Median wall-clock and process-CPU milliseconds of each side over ``reps`` calls, alternating which
    side runs first. CPU time does not count the time this process waits for a core, so on a shared
    machine its ratio is the steadier of the two."""
    for _ in range(3):
        ours(), theirs()
    wall: dict[str, list[float]] = {"ours": [], "aten": []}
    cpu: dict[str, list[float]] = {"ours": [], "aten": []}
    for rep in range(reps):
        order = (("ours", ours), ("aten", theirs)) if rep % 2 == 0 else (("aten", theirs), ("ours", ours))
        for name, fn in order:
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - cpu_start)
            wall[name].append(time.perf_counter() - wall_start)
    median = {
        key: {name: statistics.median(v) * 1e3 for name, v in d.items()}
        for key, d in (("wall", wall), ("cpu", cpu))
    }
    return {
        "ours_ms": median["wall"]["ours"],
        "aten_ms": median["wall"]["aten"],
        "ratio": median["wall"]["ours"] / median["wall"]["aten"],
        "ours_cpu_ms": median["cpu"]["ours"],
        "aten_cpu_ms": median["cpu"]["aten"],
        "cpu_ratio": median["cpu"]["ours"] / median["cpu"]["aten"],
    }


def reps_for(shape: tuple[int, ...], quick: bool) -> int:
    """More repetitions for small layers (tens of microseconds) than for the 256x256 ones."""
    if quick:
        return 5
    return 400 if math.prod(shape) <= 64 * 64 * 64 else 100


def bench_network_set(name: str, arch: str, ngf: int, ndf: int, size: int, quick: bool) -> dict:
    torch.manual_seed(0)
    generator = build_generator(arch, ngf=ngf)
    discriminator = build_discriminator("basic", ndf=ndf)
    configs = norm_layer_configs([generator, discriminator], size)
    rows = []
    for (shape, activation, residual), count in configs.items():
        ours = layer_step(shape, activation, residual, ours=True)
        theirs = layer_step(shape, activation, residual, ours=False)
        timing = time_interleaved(ours, theirs, reps_for(shape, quick))
        rows.append(
            {"shape": list(shape), "activation": activation, "residual": residual, "count": count, **timing}
        )
        print(json.dumps({"set": name, **rows[-1]}), file=sys.stderr, flush=True)
    summed = {
        key: sum(r[f"ours{key}_ms"] * r["count"] for r in rows)
        / sum(r[f"aten{key}_ms"] * r["count"] for r in rows)
        for key in ("", "_cpu")
    }
    return {
        "networks": f"{arch} ngf {ngf} + PatchGAN ndf {ndf}, {size}x{size}, batch 1",
        "ratio_geomean": geomean([r["ratio"] for r in rows]),
        "cpu_ratio_geomean": geomean([r["cpu_ratio"] for r in rows]),
        "ratio_worst": max(r["ratio"] for r in rows),
        "ratio_all_layers_summed": summed[""],
        "cpu_ratio_all_layers_summed": summed["_cpu"],
        "layers": rows,
    }


class AtenInstanceNorm(nn.Module):
    """``torch.nn.InstanceNorm2d`` then the activation and residual add as separate modules and ops:
    the unfused layers the reference networks run, with the weights of one of our layers."""

    def __init__(self, layer: InstanceNorm2d) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(layer.num_features, eps=layer.eps, affine=layer.affine)
        if layer.affine:
            self.norm.load_state_dict(layer.state_dict())
        activations = {
            None: nn.Identity(),
            "relu": nn.ReLU(),
            "leaky_relu": nn.LeakyReLU(layer.negative_slope),
        }
        self.activation = activations[layer.activation]

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        y = self.activation(self.norm(x))
        return y if residual is None else y + residual


def with_aten_norms(net: nn.Module) -> nn.Module:
    """``net`` with every InstanceNorm2d of ours replaced, in place, by ``AtenInstanceNorm``."""
    for parent in list(net.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, InstanceNorm2d):
                setattr(parent, child_name, AtenInstanceNorm(child))
    return net


def bench_generator(quick: bool) -> dict:
    """resnet_6blocks ngf 16 forward+backward at 56x56, batch 1: our layers vs torch.nn.InstanceNorm2d."""
    torch.manual_seed(0)
    ours = build_generator("resnet_6blocks", ngf=16)
    aten = with_aten_norms(copy.deepcopy(ours))
    image = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        max_abs_diff = (ours(image) - aten(image)).abs().max().item()

    def step(net: nn.Module) -> Callable[[], None]:
        def run() -> None:
            net.zero_grad(set_to_none=True)
            net(image).square().mean().backward()

        return run

    timing = time_interleaved(step(ours), step(aten), 5 if quick else 100)
    return {
        "network": "resnet_6blocks ngf 16, 56x56, batch 1, forward+backward",
        "max_abs_diff": max_abs_diff,
        **timing,
    }


def run_with_threads(threads: int, quick: bool) -> dict:
    """Every layer set and the generator check with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    sets = {name: bench_network_set(name, *spec, quick=quick) for name, *spec in NETWORK_SETS}
    return {
        "threads": threads,
        "ratio_geomean": geomean([s["ratio_geomean"] for s in sets.values()]),
        "cpu_ratio_geomean": geomean([s["cpu_ratio_geomean"] for s in sets.values()]),
        "sets": sets,
        "generator": bench_generator(quick),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    thread_counts = args.threads or sorted({torch.get_num_threads(), 1}, reverse=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    runs = [run_with_threads(threads, args.quick) for threads in thread_counts]
    report = {
        "benchmark": "instance_norm_cpu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} ({platform.processor() or 'cpu'}), {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "quick": args.quick,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "seconds": round(time.perf_counter() - started, 1),
        "op": "forward+backward of act(instance_norm(x, w, b)) (+ residual), eps 1e-5, fp32, NCHW",
        "goal": "ratio (ours / ATen) <= 1.0 per network set",
        "runs": runs,
    }
    print(json.dumps(report, indent=2))
    if not args.quick:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
