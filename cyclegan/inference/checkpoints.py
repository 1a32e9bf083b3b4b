"""Load one generator, ready to run, from any file kind we know: Lightning checkpoint, reference ``.pth``,
exported TorchScript, safetensors or ONNX. The kind is read from the file's content, never from its name,
and every setting a file declares is checked before a network is built from it."""

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

from cyclegan.checkpoint_files import MODEL_KEY, CheckpointError, load_checkpoint_file
from cyclegan.data.domains import DIRECTIONS
from cyclegan.inference.generator_settings import build_declared_generator, checked_generator_settings
from cyclegan.inference.onnx_generator import OnnxGenerator, external_data_tensors, start_session
from cyclegan.inference.padding import PadCropGenerator, size_multiple_of
from cyclegan.nn import has_batchnorm, load_reference_weights, set_batchnorm_mode

# Name of the JSON record exported files carry (TorchScript extra file, safetensors metadata key).
METADATA_KEY = "cyclegan"
# The generators of a checkpoint without a MODEL_KEY record: CycleGAN's, from before the record existed.
CYCLEGAN_GENERATORS = {"AtoB": "netG_A", "BtoA": "netG_B"}
_REFERENCE_NAME = re.compile(r"^(?P<stem>.*net_G_)(?P<domain>[AB])\.pth$")


@dataclass
class LoadedGenerator:
    """A generator wrapped for full-resolution use, plus what we know about where it came from.

    ``config`` holds the build_generator kwargs (for TorchScript and ONNX, whose network is in the file,
    what its metadata says). ``batchnorm`` is the statistics its BatchNorm layers use (see
    `cyclegan.nn.batchnorm`), None for a network without BatchNorm.
    """

    module: PadCropGenerator | torch.jit.ScriptModule | OnnxGenerator
    direction: str
    kind: str
    config: dict[str, Any] | None
    path: Path
    batchnorm: str | None = None


def check_direction(direction: str) -> None:
    """Raise a ValueError naming the valid directions."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")


def detect_kind(path: Path) -> str:
    """``"safetensors"``, ``"torchscript"`` or ``"torch"`` (a torch.save file) from the file's first bytes."""
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
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
    path: str | Path,
    direction: str = "AtoB",
    *,
    device: str | torch.device = "cpu",
    batchnorm: str | None = None,
) -> LoadedGenerator:
    """Load the generator translating in ``direction`` from ``path``, in eval mode on ``device``.

    ``batchnorm`` sets which statistics the BatchNorm layers of a pix2pix generator normalize with,
    ``image`` or ``running`` (see `cyclegan.nn.batchnorm`); None: what an exported file was written with,
    else ``image``. TorchScript and ONNX files can only run the way they were exported."""
    check_direction(direction)
    path = Path(path)
    kind = detect_kind(path)
    if kind == "safetensors":
        loaded = _open_safetensors(path, direction)
    elif kind == "torchscript":
        loaded = _open_torchscript(path, direction)
    elif _is_onnx(path):
        loaded = _open_onnx(path, direction, torch.device(device))
    else:
        checkpoint = load_checkpoint_file(path)
        if "state_dict" in checkpoint and "hyper_parameters" in checkpoint:
            loaded = _open_lightning(path, checkpoint, direction)
        elif checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
            loaded = _open_reference(path, checkpoint, direction)
        else:
            raise CheckpointError(
                f"{path} is neither a Lightning checkpoint of ours (no 'state_dict' + 'hyper_parameters') "
                f"nor a reference generator state_dict (a flat dict of tensors); top-level keys: "
                f"{sorted(checkpoint)[:8]}"
            )
    if isinstance(loaded.module, PadCropGenerator):
        loaded.batchnorm = (
            (batchnorm or loaded.batchnorm or "image") if has_batchnorm(loaded.module) else None
        )
        if loaded.batchnorm is not None:
            set_batchnorm_mode(loaded.module, loaded.batchnorm)
        loaded.module.requires_grad_(False)  # (TorchScript modules refuse requires_grad_)
    elif batchnorm is not None and loaded.batchnorm not in (None, batchnorm):
        raise CheckpointError(
            f"{path} was exported with batchnorm={loaded.batchnorm}; export it again with "
            f"batchnorm={batchnorm} to run it that way"
        )
    loaded.module.eval().to(device)
    return loaded


def load_generator(
    path: str | Path,
    direction: str = "AtoB",
    *,
    device: str | torch.device = "cpu",
    batchnorm: str | None = None,
) -> nn.Module:
    """A ready generator (eval mode, no grad) for ``direction`` from any checkpoint or export of ours.

    The module takes (N, C, H, W) in [-1, 1] of any size and returns the same size, translated.
    ``batchnorm``: see `open_generator`.
    """
    return open_generator(path, direction, device=device, batchnorm=batchnorm).module


def wrap(generator: nn.Module, config: dict[str, Any]) -> PadCropGenerator:
    """Wrap a built generator so it runs at any size."""
    return PadCropGenerator(generator, size_multiple_of(generator), config["input_nc"], config["output_nc"])


def _load_weights(generator: nn.Module, state_dict: dict[str, torch.Tensor], path: Path, what: str) -> None:
    try:
        generator.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{what} in {path} does not fit the generator its settings describe: {error}"
        ) from None


def _seen_from(data_direction: str, direction: str) -> str:
    """A direction between the dataset's folders as the model sees it (data.direction=BtoA swaps them),
    and back: the mapping is its own inverse."""
    return direction if data_direction == "AtoB" else DIRECTIONS[1 - DIRECTIONS.index(direction)]


def _open_lightning(path: Path, checkpoint: dict[str, Any], direction: str) -> LoadedGenerator:
    hparams = checkpoint["hyper_parameters"]
    if not isinstance(hparams, dict) or not isinstance(hparams.get("generator"), dict):
        raise CheckpointError(
            f"{path}: hyper_parameters has no 'generator' settings dict; not a CycleGAN checkpoint"
        )
    config = checked_generator_settings(hparams["generator"], path, CheckpointError)
    # Directions name the dataset's folders (A: trainA/testA). Trained with data.direction=BtoA, the
    # model's AtoB generator (CycleGAN's G_A) maps the B folders to A, so folder direction AtoB is its
    # BtoA generator (G_B).
    data_direction = (checkpoint.get("datamodule_hyper_parameters") or {}).get("direction", "AtoB")
    model = checkpoint.get(MODEL_KEY) or {}
    generators = model.get("generators") or CYCLEGAN_GENERATORS
    if not isinstance(generators, dict) or not set(generators) <= set(DIRECTIONS):
        raise CheckpointError(f"{path}: its {MODEL_KEY} generators are not a dict direction -> attribute")
    model_direction = _seen_from(data_direction, direction)
    if model_direction not in generators:
        held = " and ".join(sorted(_seen_from(data_direction, name) for name in generators))
        raise CheckpointError(
            f"{path} ({model.get('class', 'a model')}, trained with data.direction={data_direction}) "
            f"translates {held} only, not {direction}"
        )
    if model_direction != "AtoB":
        config["input_nc"], config["output_nc"] = config["output_nc"], config["input_nc"]
    prefix = f"{generators[model_direction]}."
    state_dict = {
        key[len(prefix) :]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)
    }
    if not state_dict:
        raise CheckpointError(f"{path} holds no '{prefix}*' weights for direction {direction}")
    generator = build_declared_generator(config, path, CheckpointError)
    _load_weights(generator, state_dict, path, f"the {prefix[:-1]} weights")
    return LoadedGenerator(wrap(generator, config), direction, "lightning", config, path)


def _reference_file_for(path: Path, direction: str) -> tuple[Path, str]:
    """The reference's training folders hold ``*_net_G_A.pth`` (A to B) and ``*_net_G_B.pth`` (B to A)."""
    match = _REFERENCE_NAME.match(path.name)
    if match is None:
        if direction == "BtoA":
            raise CheckpointError(
                f"{path} holds one generator, used as AtoB; for the other direction pass the matching "
                "file (e.g. zebra2horse for horse2zebra, or latest_net_G_B.pth next to latest_net_G_A.pth)"
            )
        return path, "AtoB"
    wanted = "A" if direction == "AtoB" else "B"
    sibling = path.with_name(f"{match.group('stem')}{wanted}.pth")
    if wanted != match.group("domain") and not sibling.exists():
        raise CheckpointError(f"direction {direction} needs {sibling.name} next to {path}; it does not exist")
    return sibling, direction


def _open_reference(path: Path, state_dict: dict[str, torch.Tensor], direction: str) -> LoadedGenerator:
    source, direction = _reference_file_for(path, direction)
    if source != path:
        state_dict = load_checkpoint_file(source)
    try:
        generator = load_reference_weights(state_dict)
    except (ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(
            f"{source} is not a reference generator state_dict we can load: {error}"
        ) from None
    if getattr(generator, "role", "generator") != "generator":
        raise CheckpointError(f"{source} holds a {generator.spec['arch']} discriminator, not a generator")
    config = dict(generator.spec)
    return LoadedGenerator(wrap(generator, config), direction, "reference", config, source)


def _read_metadata(text: str | None, path: Path) -> dict[str, Any]:
    """The JSON record cyclegan-export wrote, checked to name a direction."""
    if not text:
        raise CheckpointError(
            f"{path} has no '{METADATA_KEY}' metadata: it was not exported by cyclegan-export"
        )
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: its '{METADATA_KEY}' metadata is not valid JSON ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("direction") not in DIRECTIONS:
        found = metadata.get("direction") if isinstance(metadata, dict) else metadata
        raise CheckpointError(
            f"{path}: its '{METADATA_KEY}' metadata must name a direction {list(DIRECTIONS)}, got {found!r}"
        )
    return metadata


def _check_exported_direction(path: Path, stored: str, direction: str) -> None:
    if stored != direction:
        raise CheckpointError(
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
        raise CheckpointError(f"cannot read safetensors file {path}: {error}") from None
    _check_exported_direction(path, metadata["direction"], direction)
    config = checked_generator_settings(metadata.get("generator"), path, CheckpointError)
    generator = build_declared_generator(config, path, CheckpointError)
    _load_weights(generator, state_dict, path, "the weights")
    module = wrap(generator, config)
    return LoadedGenerator(module, direction, "safetensors", config, path, metadata.get("batchnorm"))


def _open_torchscript(path: Path, direction: str) -> LoadedGenerator:
    extra = {f"{METADATA_KEY}.json": ""}
    try:
        with warnings.catch_warnings():  # torch.jit.load is deprecated, but the files are ours to read
            warnings.simplefilter("ignore", category=FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[0]
        raise CheckpointError(f"cannot read TorchScript file {path}: {reason}") from None
    metadata = _read_metadata(extra[f"{METADATA_KEY}.json"], path)
    _check_exported_direction(path, metadata["direction"], direction)
    generator = metadata.get("generator")
    return LoadedGenerator(module, direction, "torchscript", generator, path, metadata.get("batchnorm"))


def _open_onnx(path: Path, direction: str, device: torch.device) -> LoadedGenerator:
    external = external_data_tensors(path)
    if external:
        raise CheckpointError(
            f"{path} keeps weights in other files ({', '.join(external[:3])}); cyclegan-export writes "
            "self-contained ONNX files, and an external data path may point anywhere: refusing it"
        )
    try:
        session, metadata_map = start_session(path, device)
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    metadata = _read_metadata(metadata_map.get(METADATA_KEY), path)
    _check_exported_direction(path, metadata["direction"], direction)
    channels = [metadata.get(key) for key in ("input_nc", "output_nc")]
    if not all(isinstance(count, int) and not isinstance(count, bool) and count > 0 for count in channels):
        raise CheckpointError(f"{path}: its '{METADATA_KEY}' metadata lacks valid input_nc and output_nc")
    module = OnnxGenerator(session, *channels)
    return LoadedGenerator(
        module, direction, "onnx", metadata.get("generator"), path, metadata.get("batchnorm")
    )
