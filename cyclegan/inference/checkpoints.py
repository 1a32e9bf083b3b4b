"""Load one generator, ready to run, from any file kind we know: Lightning checkpoint, reference ``.pth``,
exported TorchScript or safetensors. The kind is read from the file's content, never from its name."""

from __future__ import annotations

import json
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cyclegan.inference.padding import PadCropGenerator, size_multiple_of
from cyclegan.nn import build_generator, load_reference_weights

DIRECTIONS = ("AtoB", "BtoA")
# Name of the JSON record exported files carry (TorchScript extra file, safetensors metadata key).
METADATA_KEY = "cyclegan"
_REFERENCE_NAME = re.compile(r"^(?P<stem>.*net_G_)(?P<domain>[AB])\.pth$")


@dataclass
class LoadedGenerator:
    """A generator wrapped for full-resolution use, plus what we know about where it came from.

    ``config`` holds the build_generator kwargs (None for TorchScript, whose code is in the file).
    """

    module: PadCropGenerator | torch.jit.ScriptModule
    direction: str
    kind: str
    config: dict[str, Any] | None
    path: Path


def check_direction(direction: str) -> None:
    """Raise a ValueError naming the valid directions."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")


def detect_kind(path: Path) -> str:
    """``"safetensors"``, ``"torchscript"`` or ``"torch"`` (a torch.save file) from the file's first bytes."""
    if not path.exists():
        raise checkpoint_error(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise checkpoint_error(f"checkpoint path is not a file: {path}")
    with path.open("rb") as file:
        head = file.read(9)
    if len(head) == 9:
        (header_size,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_size < path.stat().st_size:
            return "safetensors"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("/constants.pkl") for name in archive.namelist()):
                return "torchscript"
    return "torch"


def _is_onnx(path: Path) -> bool:
    """An ONNX model: a protobuf whose first field is ``ir_version`` (tag byte 0x08), and parses as one."""
    with path.open("rb") as file:
        if file.read(1) != b"\x08":
            return False
    try:
        import onnx
    except ImportError:
        return path.suffix.lower() == ".onnx"
    try:
        onnx.load_model(str(path), load_external_data=False)
    except Exception:  # any parse failure: not ONNX, let the torch reader explain what it is
        return False
    return True


def open_generator(
    path: str | Path, direction: str = "AtoB", *, device: str | torch.device = "cpu"
) -> LoadedGenerator:
    """Load the generator translating in ``direction`` from ``path``, in eval mode on ``device``."""
    check_direction(direction)
    path = Path(path)
    kind = detect_kind(path)
    if kind == "safetensors":
        loaded = _open_safetensors(path, direction)
    elif kind == "torchscript":
        loaded = _open_torchscript(path, direction)
    elif _is_onnx(path):
        raise checkpoint_error(
            f"{path} is an ONNX file: run it with onnxruntime (input 'image', output 'translated', "
            "(N, C, H, W) in [-1, 1]); load_generator and cyclegan-translate read checkpoints, reference "
            ".pth files and cyclegan-export's torchscript or safetensors files"
        )
    else:
        checkpoint = _read_torch_file(path)
        if "state_dict" in checkpoint and "hyper_parameters" in checkpoint:
            loaded = _open_lightning(path, checkpoint, direction)
        elif checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
            loaded = _open_reference(path, checkpoint, direction)
        else:
            raise checkpoint_error(
                f"{path} is neither a Lightning checkpoint of ours (no 'state_dict' + 'hyper_parameters') "
                f"nor a reference generator state_dict (a flat dict of tensors); top-level keys: "
                f"{sorted(checkpoint)[:8]}"
            )
    loaded.module.eval().to(device)
    if isinstance(loaded.module, PadCropGenerator):  # TorchScript modules refuse requires_grad_
        loaded.module.requires_grad_(False)
    return loaded


def load_generator(
    path: str | Path, direction: str = "AtoB", *, device: str | torch.device = "cpu"
) -> nn.Module:
    """A ready generator (eval mode, no grad) for ``direction`` from any checkpoint or export of ours.

    The module takes (N, C, H, W) in [-1, 1] of any size and returns the same size, translated.
    """
    return open_generator(path, direction, device=device).module


def wrap(generator: nn.Module, config: dict[str, Any]) -> PadCropGenerator:
    """Wrap a built generator so it runs at any size."""
    return PadCropGenerator(generator, size_multiple_of(generator), config["input_nc"], config["output_nc"])


def checkpoint_error(message: str) -> Exception:
    """A `cyclegan.callbacks.checkpoint_io.CheckpointError`, imported on first use because the
    ``cyclegan.callbacks`` package imports the training stack (LightningModule) when it loads."""
    from cyclegan.callbacks.checkpoint_io import CheckpointError

    return CheckpointError(message)


def _read_torch_file(path: Path) -> dict[str, Any]:
    """`load_checkpoint_file`, imported on first use: its module imports Lightning's CheckpointIO."""
    from cyclegan.callbacks.checkpoint_io import load_checkpoint_file

    return load_checkpoint_file(path)


def _load_weights(generator: nn.Module, state_dict: dict[str, torch.Tensor], path: Path, what: str) -> None:
    try:
        generator.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise checkpoint_error(
            f"{what} in {path} does not fit the generator its settings describe: {error}"
        ) from None


def _open_lightning(path: Path, checkpoint: dict[str, Any], direction: str) -> LoadedGenerator:
    from cyclegan.model.gan_module import MODEL_KEY

    hparams = checkpoint["hyper_parameters"]
    if not isinstance(hparams, dict) or not isinstance(hparams.get("generator"), dict):
        raise checkpoint_error(
            f"{path}: hyper_parameters has no 'generator' settings dict; not a CycleGAN checkpoint"
        )
    config = dict(hparams["generator"])
    # The model's direction -> its generator's attribute; checkpoints older than that record are CycleGAN's.
    model = checkpoint.get(MODEL_KEY) or {
        "class": "CycleGAN",
        "generators": {"AtoB": "netG_A", "BtoA": "netG_B"},
    }
    # Directions name the dataset's folders (A: trainA/testA). Trained with data.direction=BtoA, the
    # model's AtoB generator maps the B folders to A: the folder directions are the model's, swapped.
    data_direction = (checkpoint.get("datamodule_hyper_parameters") or {}).get("direction", "AtoB")
    model_direction = dict(zip(DIRECTIONS, DIRECTIONS if data_direction == "AtoB" else DIRECTIONS[::-1]))
    generators = {folders: model["generators"].get(model_direction[folders]) for folders in DIRECTIONS}
    if generators[direction] is None:
        available = " and ".join(folders for folders, name in generators.items() if name)
        raise checkpoint_error(
            f"{path} holds a {model['class']} model, which translates {available} only; "
            f"direction={direction} is not available"
        )
    if model_direction[direction] == "BtoA":
        config["input_nc"], config["output_nc"] = config["output_nc"], config["input_nc"]
    prefix = f"{generators[direction]}."
    state_dict = {
        key[len(prefix) :]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)
    }
    if not state_dict:
        raise checkpoint_error(f"{path} holds no '{prefix}*' weights for direction {direction}")
    generator = build_generator(**config)
    _load_weights(generator, state_dict, path, f"the {prefix[:-1]} weights")
    return LoadedGenerator(wrap(generator, config), direction, "lightning", config, path)


def _reference_file_for(path: Path, direction: str) -> tuple[Path, str]:
    """The reference's training folders hold ``*_net_G_A.pth`` (A to B) and ``*_net_G_B.pth`` (B to A)."""
    match = _REFERENCE_NAME.match(path.name)
    if match is None:
        if direction == "BtoA":
            raise checkpoint_error(
                f"{path} holds one generator, used as AtoB; for the other direction pass the matching "
                "file (e.g. zebra2horse for horse2zebra, or latest_net_G_B.pth next to latest_net_G_A.pth)"
            )
        return path, "AtoB"
    wanted = "A" if direction == "AtoB" else "B"
    sibling = path.with_name(f"{match.group('stem')}{wanted}.pth")
    if wanted != match.group("domain") and not sibling.exists():
        raise checkpoint_error(
            f"direction {direction} needs {sibling.name} next to {path}; it does not exist"
        )
    return sibling, direction


def _open_reference(path: Path, state_dict: dict[str, torch.Tensor], direction: str) -> LoadedGenerator:
    source, direction = _reference_file_for(path, direction)
    if source != path:
        state_dict = _read_torch_file(source)
    try:
        generator = load_reference_weights(state_dict)
    except (ValueError, KeyError, RuntimeError) as error:
        raise checkpoint_error(
            f"{source} is not a reference generator state_dict we can load: {error}"
        ) from None
    if getattr(generator, "role", "generator") != "generator":
        raise checkpoint_error(f"{source} holds a {generator.spec['arch']} discriminator, not a generator")
    config = dict(generator.spec)
    return LoadedGenerator(wrap(generator, config), direction, "reference", config, source)


def _read_metadata(text: str | None, path: Path) -> dict[str, Any]:
    if not text:
        raise checkpoint_error(
            f"{path} has no '{METADATA_KEY}' metadata: it was not exported by cyclegan-export"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise checkpoint_error(f"{path}: its '{METADATA_KEY}' metadata is not valid JSON ({error})") from None


def _check_exported_direction(path: Path, stored: str, direction: str) -> None:
    if stored != direction:
        raise checkpoint_error(
            f"{path} holds the {stored} generator only; export direction={direction} from the checkpoint "
            f"to translate {direction}"
        )


def _open_safetensors(path: Path, direction: str) -> LoadedGenerator:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = _read_metadata((file.metadata() or {}).get(METADATA_KEY), path)
            state_dict = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise checkpoint_error(f"cannot read safetensors file {path}: {error}") from None
    _check_exported_direction(path, metadata["direction"], direction)
    config = metadata["generator"]
    generator = build_generator(**config)
    _load_weights(generator, state_dict, path, "the weights")
    return LoadedGenerator(wrap(generator, config), direction, "safetensors", config, path)


def _open_torchscript(path: Path, direction: str) -> LoadedGenerator:
    extra = {f"{METADATA_KEY}.json": ""}
    try:
        with warnings.catch_warnings():  # torch.jit.load is deprecated, but the files are ours to read
            warnings.simplefilter("ignore", category=FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[0]
        raise checkpoint_error(f"cannot read TorchScript file {path}: {reason}") from None
    metadata = _read_metadata(extra[f"{METADATA_KEY}.json"], path)
    _check_exported_direction(path, metadata["direction"], direction)
    return LoadedGenerator(module, direction, "torchscript", metadata.get("generator"), path)
