"""Import reference (pytorch-CycleGAN-and-pix2pix) weights: read a ``.pth`` state_dict, infer the network
from its keys and shapes, convert it to our layout, and explain any mismatch in config terms."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import nn

from cyclegan.nn.factory import build_discriminator, build_generator
from cyclegan.nn.layers import conv_norm_pairs
from cyclegan.nn.norm import RUNNING_STAT_KEYS

_FAMILY = {
    "resnet_9blocks": "ResNet",
    "resnet_6blocks": "ResNet",
    "resnet": "ResNet",
    "unet_256": "U-Net",
    "unet_128": "U-Net",
    "unet": "U-Net",
    "style_transfer": "style-transfer",
    "basic": "PatchGAN",
    "n_layers": "PatchGAN",
    "pixel": "PixelGAN",
}


def read_state_dict(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> tuple[dict, str]:
    """``(state_dict, name)`` from a mapping or a ``.pth`` file (``torch.load(weights_only=True)``)."""
    if isinstance(source, Mapping):
        obj, name = source, "checkpoint"
    else:
        name = os.fspath(source)
        if not os.path.isfile(name):
            raise FileNotFoundError(f"reference weights file not found: {name}")
        try:
            obj = torch.load(name, map_location="cpu", weights_only=True)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"cannot read reference weights {name}: {reason}. The file is corrupt or truncated "
                "(download it again) or is not a PyTorch .pth state_dict"
            ) from exc
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{name} holds a {type(obj).__name__}, not a state_dict (parameter names to tensors)"
        )
    if isinstance(obj.get("state_dict"), Mapping):
        raise ValueError(
            f"{name} is a training checkpoint with a 'state_dict' entry, not one network's state_dict; "
            "load cyclegan training checkpoints through cyclegan.inference"
        )
    bad = [
        key for key, value in obj.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)
    ]
    if bad:
        raise ValueError(f"{name} is not a state_dict of tensors: entries {bad[:5]} are not named tensors")
    return dict(obj), name


def clean_reference_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DataParallel's ``module.`` prefix; drop the running statistics that old PyTorch saved for
    InstanceNorm (a norm without ``weight``); instance normalization never uses them."""
    items = dict(state_dict)
    if items and all(key.startswith("module.") for key in items):
        items = {key[len("module.") :]: value for key, value in items.items()}
    cleaned = {}
    for key, value in items.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf in RUNNING_STAT_KEYS and f"{prefix}.weight" not in items:
            continue
        cleaned[key] = value
    return cleaned


def _conv_weight(state_dict: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    weight = state_dict.get(key)
    if weight is None or weight.dim() != 4:
        raise ValueError(
            f"expected a conv weight at {key!r}, found {None if weight is None else tuple(weight.shape)}"
        )
    return weight


def _norm_of(state_dict: Mapping[str, torch.Tensor], conv: str, norm: str) -> tuple[str, str]:
    """``(norm, layout)`` from a conv -> norm pair: BatchNorm keeps running stats, the seed's InstanceNorm
    has weights only, the reference's has no keys and a biased conv (norm "none": neither)."""
    if f"{norm}.weight" in state_dict:
        return ("batch", "reference") if f"{norm}.running_mean" in state_dict else ("instance", "seed")
    return ("instance", "reference") if f"{conv}.bias" in state_dict else ("none", "reference")


def _infer_resnet(sd: Mapping[str, torch.Tensor]) -> dict:
    blocks = sorted({int(m.group(1)) for key in sd if (m := re.match(r"model\.(\d+)\.conv_block\.", key))})
    n_blocks = len(blocks)
    if blocks != list(range(10, 10 + n_blocks)):
        raise ValueError(f"residual blocks at model indices {blocks} are not consecutive from model.10")
    ngf, input_nc = _conv_weight(sd, "model.1.weight").shape[:2]
    output_nc = _conv_weight(sd, f"model.{n_blocks + 17}.weight").shape[0]
    up = _conv_weight(sd, f"model.{n_blocks + 10}.weight")
    convs = tuple(
        int(m.group(1))
        for key in sorted(sd)
        if (m := re.fullmatch(r"model\.10\.conv_block\.(\d+)\.weight", key)) and sd[key].dim() == 4
    )
    block_layouts = {(1, 5): ("reflect", False), (1, 6): ("reflect", True), (0, 3): ("zero", False)}
    block_layouts[(0, 4)] = ("zero", True)
    padding_type, use_dropout = block_layouts.get(tuple(sorted(convs)), ("reflect", False))
    norm, layout = _norm_of(sd, "model.1", "model.2")
    return {
        "role": "generator",
        "arch": {9: "resnet_9blocks", 6: "resnet_6blocks"}.get(n_blocks, "resnet"),
        "layout": layout,
        "input_nc": input_nc,
        "output_nc": output_nc,
        "ngf": ngf,
        "norm": norm,
        "n_blocks": n_blocks,
        "padding_type": padding_type,
        "use_dropout": use_dropout,
        "upsample": "transpose" if up.shape[0] == 4 * ngf else "resize",
    }


def _infer_unet(sd: Mapping[str, torch.Tensor]) -> dict:
    prefix, child, num_downs = "model.model.", "1", 1
    while any(key.startswith(f"{prefix}{child}.model.") for key in sd):
        prefix, child, num_downs = f"{prefix}{child}.model.", "3", num_downs + 1
    ngf, input_nc = _conv_weight(sd, "model.model.0.weight").shape[:2]
    output_nc = _conv_weight(sd, "model.model.3.weight").shape[1]
    norm, layout = _norm_of(sd, "model.model.1.model.1", "model.model.1.model.2")
    return {
        "role": "generator",
        "arch": {8: "unet_256", 7: "unet_128"}.get(num_downs, "unet"),
        "layout": layout,
        "input_nc": input_nc,
        "output_nc": output_nc,
        "ngf": ngf,
        "norm": norm,
        "num_downs": num_downs,
    }


def _infer_style_transfer(sd: Mapping[str, torch.Tensor]) -> dict:
    ngf, input_nc = _conv_weight(sd, "encoder.0.weight").shape[:2]
    n_blocks = len({key.split(".")[1] for key in sd if key.startswith("residual.")})
    up = _conv_weight(sd, "decoder.0.weight")
    norm, layout = _norm_of(sd, "encoder.0", "encoder.1")
    return {
        "role": "generator",
        "arch": "style_transfer",
        "layout": layout,
        "input_nc": input_nc,
        "output_nc": _conv_weight(sd, "decoder.6.weight").shape[0],
        "ngf": ngf,
        "norm": norm,
        "n_blocks": n_blocks,
        "upsample": "transpose" if up.shape[0] == 4 * ngf else "resize",
    }


def _infer_patchgan(sd: Mapping[str, torch.Tensor]) -> dict:
    convs = sorted(
        int(m.group(1))
        for key in sd
        if (m := re.fullmatch(r"model\.(\d+)\.weight", key)) and sd[key].dim() == 4
    )
    n_layers = len(convs) - 2
    if n_layers < 1 or convs != [0] + [2 + 3 * i for i in range(n_layers + 1)]:
        raise ValueError(f"conv layers at model indices {convs} do not form a PatchGAN")
    ndf, input_nc = _conv_weight(sd, "model.0.weight").shape[:2]
    norm, layout = _norm_of(sd, "model.2", "model.3")
    return {
        "role": "discriminator",
        "arch": "basic" if n_layers == 3 else "n_layers",
        "layout": layout,
        "input_nc": input_nc,
        "ndf": ndf,
        "n_layers": n_layers,
        "norm": norm,
    }


def _infer_pixel(sd: Mapping[str, torch.Tensor]) -> dict:
    ndf, input_nc = _conv_weight(sd, "net.0.weight").shape[:2]
    norm, layout = _norm_of(sd, "net.2", "net.3")
    return {
        "role": "discriminator",
        "arch": "pixel",
        "layout": layout,
        "input_nc": input_nc,
        "ndf": ndf,
        "norm": norm,
    }


def infer_reference_spec(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """The network a (cleaned) state_dict belongs to: ``role``, ``arch``, ``layout`` and the
    build_generator / build_discriminator settings its keys and shapes determine."""
    keys = list(state_dict)
    if any(key.startswith("model.model.") for key in keys):
        spec = _infer_unet(state_dict)
    elif any(re.match(r"model\.\d+\.conv_block\.", key) for key in keys):
        spec = _infer_resnet(state_dict)
    elif any(key.startswith("encoder.") for key in keys):
        spec = _infer_style_transfer(state_dict)
    elif any(key.startswith("net.") for key in keys):
        spec = _infer_pixel(state_dict)
    elif "model.0.weight" in state_dict:
        spec = _infer_patchgan(state_dict)
    else:
        raise ValueError(f"not a CycleGAN generator or discriminator state_dict: its keys begin {keys[:4]}")
    return spec


def _convert(net: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Adapt a state_dict to ``net``'s layout where that is exact: drop a conv bias an InstanceNorm
    cancels, give a missing conv bias 0, set missing affine InstanceNorm parameters to 1 / 0, drop
    identity affine parameters ``net`` lacks, and add a missing BatchNorm ``num_batches_tracked``."""
    expected = net.state_dict()
    out = dict(state_dict)
    for conv, norm_name, norm in conv_norm_pairs(net):
        if isinstance(norm, nn.BatchNorm2d):
            key = f"{norm_name}.num_batches_tracked"
            out.setdefault(key, torch.zeros_like(expected[key]))
            continue
        if f"{conv}.bias" not in expected:
            out.pop(f"{conv}.bias", None)
        for leaf, identity in (("weight", 1.0), ("bias", 0.0)):
            key = f"{norm_name}.{leaf}"
            if norm.affine and key not in out:
                out[key] = torch.full_like(expected[key], identity)
            elif not norm.affine and key in out and bool((out[key] == identity).all()):
                del out[key]
    for key, value in expected.items():
        module_name = key.rpartition(".")[0]
        is_conv = isinstance(net.get_submodule(module_name), (nn.Conv2d, nn.ConvTranspose2d))
        if is_conv and key.endswith(".bias") and key not in out and f"{module_name}.weight" in out:
            out[key] = torch.zeros_like(value)
    return out


def _hydra_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


_PRESETS = {
    "n_blocks": ({9: "resnet_9blocks", 6: "resnet_6blocks"}, "resnet"),
    "num_downs": ({8: "unet_256", 7: "unet_128"}, "unet"),
    "n_layers": ({3: "basic"}, "n_layers"),
}


def _fix(role: str, our_arch: str, field: str, value: object) -> str:
    """The config change that gives the model ``field=value``; an arch preset changes by name."""
    base = f"model.{role}"
    names, free_arch = _PRESETS.get(field, ({}, ""))
    if our_arch in names.values():
        if value in names:
            return f"{base}.arch={names[value]}"
        return f"{base}.arch={free_arch} and {base}.{field}={value}"
    return f"{base}.{field}={_hydra_value(value)}"


_PHRASES = {
    "n_blocks": "{} residual blocks",
    "num_downs": "{} downsamplings (num_downs)",
    "n_layers": "n_layers={}",
    "input_nc": "{} input channels",
    "output_nc": "{} output channels",
    "ngf": "ngf={}",
    "ndf": "ndf={}",
    "norm": "norm={}",
    "padding_type": "padding_type={}",
    "use_dropout": "use_dropout={}",
    "upsample": "upsample={}",
}


def _spec_differences(checkpoint: dict, model: dict, role: str) -> list[str]:
    """Human-readable differences between an inferred checkpoint spec and a model's spec, each with
    the config setting that fixes it."""
    if checkpoint["role"] != role:
        return [
            f"it holds a {checkpoint['role']} ({checkpoint['arch']}) but the model is a {role}: "
            f"load it into a {checkpoint['role']}"
        ]
    if _FAMILY[checkpoint["arch"]] != _FAMILY[model["arch"]]:
        return [
            f"it holds a {_FAMILY[checkpoint['arch']]} {role} ({checkpoint['arch']}), the model is a "
            f"{_FAMILY[model['arch']]} {role} ({model['arch']}): set model.{role}.arch={checkpoint['arch']}"
        ]
    messages = []
    for field, phrase in _PHRASES.items():
        if field not in checkpoint or field not in model:
            continue
        ours, theirs = model[field], checkpoint[field]
        if field == "padding_type":  # reflect and replicate pads leave the same keys
            ours, theirs = ("zero" if v == "zero" else "reflect or replicate" for v in (ours, theirs))
        if ours != theirs:
            fix = _fix(role, model["arch"], field, checkpoint[field])
            ours_text = _hydra_value(ours) if phrase.startswith("{}") else phrase.format(_hydra_value(ours))
            messages.append(
                f"checkpoint has {phrase.format(_hydra_value(theirs))}, model has {ours_text}: set {fix}"
            )
    if (
        checkpoint["layout"] == "seed"
        and model["layout"] == "reference"
        and checkpoint["norm"] == model["norm"] == "instance"
    ):
        messages.append(
            "checkpoint is in the seed layout (affine InstanceNorm), model in the reference layout: "
            f"set model.{role}.layout=seed"
        )
    return messages


def _explain_mismatch(net: nn.Module, state_dict: dict, converted: dict, expected: dict, name: str) -> str:
    role = getattr(net, "role", "network")
    spec = getattr(net, "spec", None)
    try:
        checkpoint = infer_reference_spec(state_dict)
    except ValueError as exc:
        checkpoint, reason = None, str(exc)
    if checkpoint is not None and spec is not None:
        differences = _spec_differences(checkpoint, spec, role)
        if differences:
            return f"{name} does not fit the {role}: " + "; ".join(differences)
    missing = [key for key in expected if key not in converted]
    unexpected = [key for key in converted if key not in expected]
    shapes = [
        f"{key}: checkpoint {tuple(converted[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if key in converted and converted[key].shape != expected[key].shape
    ]
    parts = [] if checkpoint is not None else [reason]
    if missing:
        parts.append(f"{len(missing)} model entries missing from it (first: {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} entries the model lacks (first: {unexpected[:3]})")
    if shapes:
        parts.append(f"{len(shapes)} shape differences (first: {'; '.join(shapes[:3])})")
    arch = spec["arch"] if spec else type(net).__name__
    return f"{name} does not fit the {role} ({arch}): " + "; ".join(parts)


def load_reference_state_dict(
    net: nn.Module, state_dict: Mapping[str, torch.Tensor], *, name: str = "checkpoint"
) -> nn.Module:
    """Load a reference-format (or same-layout) state_dict into ``net``, converting the layout where
    exact; raise a ValueError that says what differs and which setting fixes it. Returns ``net``."""
    cleaned = clean_reference_state_dict(state_dict)
    expected = net.state_dict()
    converted = _convert(net, cleaned)
    fits = converted.keys() == expected.keys() and all(
        converted[key].shape == value.shape for key, value in expected.items()
    )
    if not fits:
        raise ValueError(_explain_mismatch(net, cleaned, converted, expected, name))
    net.load_state_dict(converted)
    return net


def load_reference_weights(
    source: str | os.PathLike | Mapping[str, torch.Tensor], *, layout: str = "seed", **options
) -> nn.Module:
    """Build the network a reference generator/discriminator checkpoint holds (arch and sizes inferred
    from its keys and shapes) in ``layout`` and load its weights. ``options`` override what the keys
    cannot tell (e.g. padding_type="replicate", use_dropout for a U-Net, backend)."""
    state_dict, name = read_state_dict(source)
    cleaned = clean_reference_state_dict(state_dict)
    try:
        spec = infer_reference_spec(cleaned)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    role, arch = spec.pop("role"), spec.pop("arch")
    spec.pop("layout")
    spec.update(options)
    build = build_generator if role == "generator" else build_discriminator
    net = build(arch, layout=layout, **spec)
    return load_reference_state_dict(net, cleaned, name=name)
