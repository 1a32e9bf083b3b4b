"""Run a cyclegan-export ONNX file in onnxruntime, as a module that translate and eval call like any
generator. Needs the optional ``onnx`` extra (``pip install 'cyclegan[onnx]'``)."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

ONNX_INPUT = "image"
ONNX_OUTPUT = "translated"


class OnnxUnavailableError(RuntimeError):
    """onnx or onnxruntime is not installed; the message says how to install it."""


class OnnxGenerator(nn.Module):
    """(N, C, H, W) in [-1, 1] of any size in, the translation out, computed by onnxruntime in float32.

    It holds no parameters: its layers live in the ONNX graph, so it can be neither tiled nor autocast.
    """

    def __init__(self, session: Any, input_nc: int, output_nc: int) -> None:
        super().__init__()
        self.session = session
        self.input_nc = input_nc
        self.output_nc = output_nc

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        feed = {ONNX_INPUT: image.detach().to("cpu", torch.float32).contiguous().numpy()}
        (translated,) = self.session.run([ONNX_OUTPUT], feed)
        return torch.from_numpy(translated).to(image.device)


def import_onnx(module: str) -> Any:
    """``onnx`` or ``onnxruntime``, or an OnnxUnavailableError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise OnnxUnavailableError(
            f"{module} is not installed; install the onnx extra: pip install 'cyclegan[onnx]'"
        ) from error


def external_data_tensors(path: Path) -> list[str]:
    """Names of the weights an ONNX file keeps in other files (which it may point anywhere)."""
    onnx = import_onnx("onnx")
    model = onnx.load_model(str(path), load_external_data=False)
    return [
        tensor.name for tensor in model.graph.initializer if tensor.data_location == onnx.TensorProto.EXTERNAL
    ]


def start_session(path: Path, device: torch.device) -> tuple[Any, dict[str, str]]:
    """An onnxruntime session for ``path`` (CUDA when ``device`` is CUDA and onnxruntime has it, else the
    CPU) and the file's metadata map; a ValueError naming the file when onnxruntime cannot load it."""
    onnxruntime = import_onnx("onnxruntime")
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            warnings.warn(
                f"this onnxruntime has no CUDA provider (install onnxruntime-gpu); {path} runs on the CPU",
                stacklevel=2,
            )
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types for graphs it cannot run
        raise ValueError(f"onnxruntime cannot load {path}: {error}") from None
    return session, dict(session.get_modelmeta().custom_metadata_map)
