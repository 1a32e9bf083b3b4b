"""Write one generator as a standalone file: ONNX, TorchScript or safetensors.

ONNX and TorchScript files hold the pad/crop wrapper, so they take (batch, channels, height, width) in
[-1, 1] of any size. InstanceNorm runs through its PyTorch path while exporting (the Triton kernels are a
custom op no exporter knows). safetensors holds the weights plus, in its metadata, the generator settings
and direction `load_generator` needs to rebuild the network. The file is written under a temporary name
beside the output and renamed into place, so an existing file is replaced whole or not at all.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from cyclegan.inference.checkpoints import METADATA_KEY, LoadedGenerator
from cyclegan.inference.onnx_generator import ONNX_INPUT, ONNX_OUTPUT, import_onnx
from cyclegan.inference.output_paths import check_output_folder, same_file_as_any
from cyclegan.inference.padding import PadCropGenerator
from cyclegan.nn import InstanceNorm2d

FORMATS = ("onnx", "torchscript", "safetensors")
ONNX_OPSET = 18


def check_format(fmt: str) -> None:
    """Raise a ValueError naming the supported formats."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {list(FORMATS)}")


@contextmanager
def torch_norm_backend(module: nn.Module) -> Iterator[None]:
    """Switch every InstanceNorm layer of ``module`` to the PyTorch path while inside."""
    layers = [m for m in module.modules() if isinstance(m, InstanceNorm2d)]
    saved = [layer.backend for layer in layers]
    for layer in layers:
        layer.backend = "torch"
    try:
        yield
    finally:
        for layer, backend in zip(layers, saved):
            layer.backend = backend


def _metadata(loaded: LoadedGenerator) -> str:
    module = loaded.module
    record = {
        "direction": loaded.direction,
        "generator": loaded.config,
        "size_multiple": int(module.multiple),
        "input_nc": int(module.input_nc),
        "output_nc": int(module.output_nc),
        "source": loaded.path.name,
        "source_kind": loaded.kind,
        "batchnorm": loaded.batchnorm,
    }
    return json.dumps(record)


def _example_input(module: PadCropGenerator) -> torch.Tensor:
    size = max(2 * module.multiple, 32)
    return torch.rand(2, module.input_nc, size, size + module.multiple) * 2 - 1


def check_output(output: Path, sources: Iterable[Path], *, overwrite: bool) -> None:
    """Raise a ValueError when writing ``output`` would replace one of ``sources`` (by any name: symlinks
    and hard links included), replace another file without ``overwrite``, or replace a folder."""
    if output.is_dir():
        raise ValueError(f"output={output} is a folder; name the file to write, e.g. {output}/generator.onnx")
    check_output_folder(output.parent)
    source = same_file_as_any(output, sources)
    if source is not None:
        raise ValueError(f"output={output} is the checkpoint being exported ({source}); choose another file")
    if output.exists() and not overwrite:
        raise ValueError(f"output={output} exists; pass overwrite=true to replace it")


def export_generator(
    loaded: LoadedGenerator, fmt: str, output: str | Path, *, overwrite: bool = False
) -> Path:
    """Write ``loaded``'s generator to ``output`` in ``fmt``; returns the path written.

    Never replaces the file it was loaded from; replaces another existing file only with ``overwrite``.
    """
    check_format(fmt)
    module = loaded.module
    if not isinstance(module, PadCropGenerator):
        raise ValueError(
            f"{loaded.path} is a {loaded.kind} file; export from a checkpoint or reference weights"
        )
    output = Path(output)
    check_output(output, [loaded.path], overwrite=overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    module = module.cpu().eval()
    partial = output.with_name(f".{output.name}.partial-{os.getpid()}")
    try:
        _write(module, loaded, fmt, partial)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def _write(module: PadCropGenerator, loaded: LoadedGenerator, fmt: str, output: Path) -> None:
    if fmt == "safetensors":
        from safetensors.torch import save

        state = {key: value.contiguous() for key, value in module.generator.state_dict().items()}
        # serialized here and written by Python so the file gets the usual permissions (umask), not 0600
        output.write_bytes(save(state, metadata={METADATA_KEY: _metadata(loaded)}))
    elif fmt == "torchscript":
        with torch_norm_backend(module), torch.no_grad(), warnings.catch_warnings():
            # tracing warns about the shape checks it freezes (constant for a fixed channel count) and
            # torch.jit itself is deprecated in favour of torch.export, which has no loadable file format
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            traced = torch.jit.trace(module.generator, _example_input(module))
            scripted = torch.jit.script(
                PadCropGenerator(traced, module.multiple, module.input_nc, module.output_nc)
            )
            torch.jit.save(scripted, str(output), _extra_files={f"{METADATA_KEY}.json": _metadata(loaded)})
    else:
        _export_onnx(module, output, _metadata(loaded))


def _export_onnx(module: PadCropGenerator, output: Path, metadata: str) -> None:
    """Export with the dynamo exporter (torch.export), batch, height and width dynamic."""
    onnx = import_onnx("onnx")

    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    with torch_norm_backend(module), torch.no_grad():
        torch.onnx.export(
            module,
            (_example_input(module),),
            str(output),
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_shapes={"image": dims},
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    model = onnx.load(str(output))
    # the output has the input's size (cropped back); name its dims so instead of the exporter's formulas
    output_dims = model.graph.output[0].type.tensor_type.shape.dim
    for dim, name in zip(output_dims, ("batch", None, "height", "width")):
        if name is not None:
            dim.dim_param = name
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    onnx.save(model, str(output))


def verify_onnx(
    module: nn.Module, path: str | Path, shapes: tuple[tuple[int, int, int], ...] = ((1, 64, 48), (2, 37, 53))
) -> float:
    """Largest |onnxruntime - PyTorch| over random inputs of the given (batch, height, width) shapes, each
    side grown as far as the module's size multiple needs to pad it by reflection (unet_256: 129 px)."""
    onnxruntime = import_onnx("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module = module.cpu().eval()
    grow = max(0, int(getattr(module, "multiple", 1)) // 2 + 1 - min(min(shape[1:]) for shape in shapes))
    worst = 0.0
    for batch, height, width in ((batch, height + grow, width + grow) for batch, height, width in shapes):
        image = torch.rand(batch, int(module.input_nc), height, width) * 2 - 1
        (onnx_out,) = session.run([ONNX_OUTPUT], {ONNX_INPUT: image.numpy()})
        with torch.no_grad():
            expected = module(image)
        worst = max(worst, float((torch.from_numpy(onnx_out) - expected).abs().max()))
    return worst
