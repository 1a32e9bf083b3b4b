"""Check on a machine without a GPU what the interpreter cannot: kernel lowering and op tracing.

The interpreter runs the kernels' arithmetic on CPU but never lowers them, and under it the ops are
opaque ``custom_op``s. This (1) builds each kernel for a CUDA target (Triton's bundled LLVM and ptxas;
no driver needed) for fp32 and bf16 at every plan step with the flags off and on and every activation,
and (2) traces the real ``triton_op`` bodies the way AOTAutograd does for inductor on a GPU, checking every
launch becomes a functional kernel node.

    TRITON_INTERPRET=0 python -m cyclegan.ops.compile_check [--arch 90]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys

PARTIALS = {"PartMean", "PartM2", "PartGz", "PartGzx"}
FP32_POINTERS = {"Mean", "Rstd", "SumGz", "SumGzx", "DWeight", "DBias"} | PARTIALS
DATA_POINTERS = {"X", "Y", "W", "B", "R", "G", "DX"}
FLOAT_SCALARS = {"eps", "slope"}


def kernel_variants():
    """(kernel, constexpr values) for both plane kernels at every step, flag set and tile shape."""
    from cyclegan.ops import backward_kernels as bk
    from cyclegan.ops import forward_kernels as fk

    flag_sets = [
        {"HAS_W": False, "HAS_B": False, "HAS_R": False, "ACTIVATION": None},
        {"HAS_W": True, "HAS_B": False, "HAS_R": True, "ACTIVATION": "relu"},
        {"HAS_W": True, "HAS_B": True, "HAS_R": True, "ACTIVATION": "leaky_relu"},
    ]
    steps = ("tile", "stream", "partials", "merge")
    blocks = [{"BLOCK_L": 1024, "BLOCK_C": 1}, {"BLOCK_L": 64, "BLOCK_C": 32}]
    kernels = (fk.instance_norm_fwd_kernel, bk.instance_norm_bwd_kernel)
    for kernel, flags, step, block in itertools.product(kernels, flag_sets, steps, blocks):
        names = {p.name for p in kernel.params if p.is_constexpr}
        values = {**flags, **block, "STEP": step, "BLOCK_S": 16}
        yield kernel, {k: v for k, v in values.items() if k in names}
    yield bk.instance_norm_bwd_param_kernel, {"BLOCK_C": 256}


def signature(kernel, constexprs: dict, dtype: str) -> dict[str, str]:
    """Triton type strings for each argument: data pointers in ``dtype``, statistics fp32, ints i32."""
    sig = {}
    for param in kernel.params:
        name = param.name
        if param.is_constexpr:
            sig[name] = "constexpr"
        elif name in FP32_POINTERS:
            sig[name] = "*fp32"
        elif name in DATA_POINTERS:
            sig[name] = f"*{dtype}"
        elif name in FLOAT_SCALARS:
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return sig


def compile_kernels(arch: int) -> int:
    """Build every kernel variant to a cubin for ``sm_<arch>``; returns how many were built."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", arch, 32)
    count = 0
    for kernel, constexprs in kernel_variants():
        for dtype in ("fp32", "bf16"):
            source = ASTSource(kernel, signature(kernel, constexprs, dtype), constexprs)
            compiled = triton.compile(source, target=target)
            assert compiled.asm["cubin"], kernel.__name__
            count += 1
    return count


class _TargetOnlyDriver:
    """Stands in for the CUDA driver while tracing: torch's mutation analysis only asks for the target."""

    def __init__(self, arch: int) -> None:
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)

    def get_current_target(self):
        return self.target


def trace_ops(arch: int) -> str:
    """Trace forward and backward ops the way AOTAutograd does for inductor (FunctionalTensorMode, fake
    tensors) and return the graph: each kernel launch must become a ``triton_kernel_wrapper_functional``
    node whose cloned tensors are exactly the kernel's outputs."""
    import torch
    import triton
    from functorch.compile import aot_function

    import cyclegan.ops.triton_op  # noqa: F401  (registers the ops)

    triton.runtime.driver.set_active(_TargetOnlyDriver(arch))
    fwd, bwd = torch.ops.cyclegan.instance_norm_fwd, torch.ops.cyclegan.instance_norm_bwd

    def forward_and_backward(x, weight, bias, residual):
        y, mean, rstd = fwd(x, weight, bias, residual, 1e-5, "leaky_relu", 0.2, "split", 24)
        dx, dweight, dbias = bwd(residual, x, weight, bias, mean, rstd, "leaky_relu", 0.2, "split", 24)
        y2, mean2, rstd2 = fwd(y, weight, None, None, 1e-5, None, 0.2, "plane", 0)
        dx2, dweight2, _ = bwd(y2, y, weight, None, mean2, rstd2, None, 0.2, "plane", 0)
        return dx + dx2, dweight + dweight2, dbias

    graphs = []

    class Traced(Exception):
        """Raised instead of running the graph: its kernels need a GPU."""

    def capture(graph_module, example_inputs):
        graphs.append(graph_module.code)

        def do_not_run(*args):
            raise Traced

        return do_not_run

    x = torch.randn(2, 3, 7, 13).contiguous(memory_format=torch.channels_last)
    with contextlib.suppress(Traced):
        aot_function(forward_and_backward, fw_compiler=capture)(
            x, torch.ones(3), torch.zeros(3), torch.randn_like(x)
        )
    return graphs[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 80 or 90")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("compile_check needs TRITON_INTERPRET=0 (the interpreter compiles nothing)", file=sys.stderr)
        return 2
    print(f"compiled {compile_kernels(args.arch)} kernel variants for sm_{args.arch}")
    graph = trace_ops(args.arch)
    launches = [line.strip() for line in graph.splitlines() if "triton_kernel_wrapper_functional(" in line]
    print(f"traced {len(launches)} kernel launches into the AOTAutograd graph")
    for line in launches:
        name = line.split("kwargs = {")[0]
        clones = line.split("tensors_to_clone = ")[1].split("]")[0] + "]"
        print(f"  {name.split('=')[0].strip()}: clones {clones}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
