"""Benchmark our fused InstanceNorm(+affine+ReLU) against eager F.instance_norm and torch.compile.

For each CycleGAN layer shape, batch, dtype and layout it times forward and forward+backward of
``relu(instance_norm(x, weight, bias))`` three ways: our op (Triton kernels), eager PyTorch
(``F.instance_norm`` then ``F.relu``) and ``torch.compile`` of the PyTorch reference formula. Bandwidth
counts the minimum traffic (forward reads x and writes y; backward also reads x and g and writes dx)
and is compared with the device's measured copy bandwidth. Prints JSON and, on CUDA, writes
benchmarks/results/instance_norm.json.

    python benchmarks/instance_norm.py              # needs a CUDA GPU
    python benchmarks/instance_norm.py --quick      # every summary key in about a minute and a half
    python benchmarks/instance_norm.py --cpu-smoke  # tiny CPU run (interpreter) that only checks the script
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

LAYER_SHAPES = [(64, 256, 256), (128, 128, 128), (256, 64, 64), (512, 31, 31)]
BATCHES = [1, 4, 16]
DTYPES = ["float32", "bfloat16"]
# --quick: the first and last layer at batch 1 and 8 in bf16 (the GPU training dtype), both layouts: 8 cases
# that give every summary key. Expected on an H200 (estimate, not yet measured): ~60 s for the
# torch.compile baseline (a fresh static compile per case), ~15 s for our kernels' compilation and
# ~10 s of timing.
QUICK = ([LAYER_SHAPES[0], LAYER_SHAPES[-1]], [1, 8], ["bfloat16"])
RESULTS = Path(__file__).resolve().parent / "results" / "instance_norm.json"
BANDWIDTH_MIN_BATCH = 8  # batch-1 activations sit in L2: quote bandwidth fractions at batch >= 8 only


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run checking the script works")
    parser.add_argument("--quick", action="store_true", help="8 cases that give every summary key")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON on CUDA")
    return parser.parse_args(argv)


def benchmark_cases(device: str, quick: bool) -> tuple[list, list, list]:
    """Layer shapes, batches and dtypes to time: tiny ones for the CPU smoke run, ``QUICK`` or all on CUDA."""
    if device == "cpu":
        return [(4, 8, 8)], [2], DTYPES
    return QUICK if quick else (LAYER_SHAPES, BATCHES, DTYPES)


def geomean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def make_timer(device: str, quick: bool):
    """Median milliseconds of a callable: triton's do_bench (L2 flushed between runs) on CUDA."""
    if device == "cuda":
        import triton.testing

        warmup, rep = (10, 40) if quick else (25, 100)
        return lambda fn, grads: triton.testing.do_bench(fn, warmup=warmup, rep=rep, grad_to_none=grads)

    def cpu_timer(fn, grads):
        fn()
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e3)
        return statistics.median(samples)

    return cpu_timer


def copy_bandwidth_gbs(device: str, timer) -> float:
    """Device-to-device copy bandwidth, counting bytes read plus bytes written."""
    import torch

    numel = (256 << 20) if device == "cuda" else (4 << 20)
    src = torch.empty(numel, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = timer(lambda: dst.copy_(src), None)
    return 2 * src.numel() * src.element_size() / ms / 1e6


def implementations(compile_baseline: bool):
    """name -> f(x, weight, bias) computing relu(instance_norm(x) * weight + bias)."""
    import torch
    import torch.nn.functional as F

    from cyclegan.ops import instance_norm, instance_norm_ref

    impls = {
        "ours": lambda x, w, b: instance_norm(x, w, b, activation="relu", backend="triton"),
        "eager": lambda x, w, b: F.relu(F.instance_norm(x, weight=w, bias=b, eps=1e-5)),
    }
    if compile_baseline:
        impls["compile"] = torch.compile(lambda x, w, b: instance_norm_ref(x, w, b, 1e-5, "relu"))
    return impls


def bench_case(impls, timer, shape, dtype, channels_last: bool, device: str) -> dict:
    import torch

    # A fresh, static compile per case: otherwise dynamo turns on dynamic shapes after the first few
    # shapes and falls back to eager past its recompile limit, which would misstate the compile baseline.
    torch._dynamo.reset()
    x = torch.randn(shape, device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(x)
    w = torch.rand(shape[1], device=device) + 0.5
    b = torch.randn(shape[1], device=device)
    x_leaf, w_leaf, b_leaf = (t.clone().requires_grad_() for t in (x, w, b))
    tensor_bytes = x.numel() * x.element_size()
    row = {
        "shape": list(shape),
        "dtype": str(dtype).removeprefix("torch."),
        "layout": "channels_last" if channels_last else "nchw",
    }
    for name, fn in impls.items():

        def forward(fn=fn):
            with torch.no_grad():
                fn(x, w, b)

        def forward_backward(fn=fn):
            fn(x_leaf, w_leaf, b_leaf).backward(g)

        fwd_ms = timer(forward, None)
        fwdbwd_ms = timer(forward_backward, [x_leaf, w_leaf, b_leaf])
        row[name] = {
            "fwd_ms": fwd_ms,
            "fwdbwd_ms": fwdbwd_ms,
            "fwd_gbs": 2 * tensor_bytes / fwd_ms / 1e6,
            "fwdbwd_gbs": 5 * tensor_bytes / fwdbwd_ms / 1e6,
        }
    return row


def summarize(rows: list[dict], copy_gbs: float) -> dict:
    """The ratios quoted in BENCHMARKS.md (speedups are baseline time / our time)."""
    big = [r for r in rows if r["shape"][0] >= BANDWIDTH_MIN_BATCH]
    bs1_first = [r for r in rows if r["shape"] == [1, 64, 256, 256]]
    speedup = lambda base, key: [r[base][key] / r["ours"][key] for r in rows if base in r]
    return {
        "fwd_copy_bw_fraction": geomean([r["ours"]["fwd_gbs"] / copy_gbs for r in big]),
        "fwdbwd_copy_bw_fraction": geomean([r["ours"]["fwdbwd_gbs"] / copy_gbs for r in big]),
        "fwd_vs_eager_geomean": geomean(speedup("eager", "fwd_ms")),
        "fwdbwd_vs_eager_geomean": geomean(speedup("eager", "fwdbwd_ms")),
        "fwdbwd_vs_compile_geomean": geomean(speedup("compile", "fwdbwd_ms")),
        "bs1_64x256_vs_eager": geomean([r["eager"]["fwdbwd_ms"] / r["ours"]["fwdbwd_ms"] for r in bs1_first]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpu_smoke:
        # The interpreter must be chosen before triton is imported.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch
    import triton

    if args.cpu_smoke:
        device = "cpu"
    elif not torch.cuda.is_available():
        print(
            "benchmarks/instance_norm.py needs a CUDA GPU for real figures and none is available; "
            "run it with --cpu-smoke to check that the script works on CPU (no figures are written).",
            file=sys.stderr,
        )
        return 2
    else:
        device = "cuda"
    layer_shapes, batches, dtypes = benchmark_cases(device, args.quick)
    timer = make_timer(device, args.quick)
    impls = implementations(compile_baseline=not args.no_compile)
    copy_gbs = copy_bandwidth_gbs(device, timer)
    rows = []
    for batch in batches:
        for layer in layer_shapes:
            for dtype in dtypes:
                for channels_last in (False, True):
                    shape = (batch, *layer)
                    rows.append(bench_case(impls, timer, shape, getattr(torch, dtype), channels_last, device))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    report = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke run, not a measurement)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "quick": args.quick,
        "op": "relu(instance_norm(x, weight, bias)), eps=1e-5",
        "bytes_moved": "forward 2x the tensor, forward+backward 5x",
        "bandwidth_fraction_min_batch": BANDWIDTH_MIN_BATCH,
        "copy_gbs": copy_gbs,
        **summarize(rows, copy_gbs),
        "rows": rows,
    }
    print(json.dumps(report, indent=2))
    if device == "cuda":
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
