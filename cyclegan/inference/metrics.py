"""FID and KID of translated images against the target domain, with torchmetrics.

Features are extracted once per image and fed to both metrics. The default extractor is the FID
Inception network (torch-fidelity's port of the TensorFlow weights, via torchmetrics); any nn.Module
mapping uint8 RGB images (N, 3, H, W) to features (N, D) can replace it.

The Inception weights file comes from the user (``inception_weights=FILE``, a file copied into the torch
hub cache) or a download: it is accepted only when its SHA-256 is the published file's, checked before
anything in it is unpickled, and then read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cyclegan.inference.devices import module_device

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
# SHA-256 of that file (its name carries the first 8 hex digits, torch hub's convention)
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"


class InceptionWeightsError(RuntimeError):
    """The FID Inception weights are missing, not downloadable, or not the published file."""


def _how_to_get_weights(target: Path) -> str:
    return (
        "To get them, on a machine with internet access run\n"
        f"    curl -L -o {INCEPTION_FILE} {INCEPTION_URL}\n"
        f"then copy the file here and either pass inception_weights=/path/to/{INCEPTION_FILE} or put it at\n"
        f"    {target}\n"
        "(torch-fidelity's FID Inception, converted from TensorFlow's 2015-12-05 graph; about 92 MB)."
    )


def inception_weights_path(weights: str | Path | None = None, *, download: bool = True) -> Path:
    """The FID Inception weights file: ``weights`` if given, else the torch hub cache (downloaded once)."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InceptionWeightsError(
                f"inception_weights={path} does not exist.\n{_how_to_get_weights(path)}"
            )
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached
    if not download:
        raise InceptionWeightsError(
            f"the FID Inception weights are not in {cached} and downloading is off.\n"
            + _how_to_get_weights(cached)
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:  # download_url_to_file checks the hash before moving the file into place
        torch.hub.download_url_to_file(
            INCEPTION_URL, os.fspath(cached), hash_prefix=INCEPTION_SHA256, progress=True
        )
    except Exception as error:  # any network failure: the message must tell what to do instead
        raise InceptionWeightsError(
            f"could not download the FID Inception weights from {INCEPTION_URL} ({type(error).__name__}: "
            f"{error}).\n{_how_to_get_weights(cached)}"
        ) from None
    return cached


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_inception_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The published Inception weights in ``path`` as a state dict; `InceptionWeightsError` (one line,
    naming the file) for any other file, refused by its SHA-256 before a byte of it is unpickled."""
    path = Path(path)
    refused = f"{path} is not a valid FID Inception weights file"
    found = _sha256(path)
    if found != INCEPTION_SHA256:
        raise InceptionWeightsError(
            f"{refused}: its SHA-256 is {found}, the published {INCEPTION_FILE} has {INCEPTION_SHA256}; "
            f"refusing to load it (get the original from {INCEPTION_URL})"
        )
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the hash matched, so only a changed published file ends up here
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InceptionWeightsError(f"{refused} ({reason})") from None
    if not isinstance(state_dict, dict) or not all(
        isinstance(value, torch.Tensor) for value in state_dict.values()
    ):
        raise InceptionWeightsError(f"{refused}: it holds no state dict of tensors")
    return state_dict


def inception_extractor(weights: str | Path | None = None, *, download: bool = True) -> nn.Module:
    """torchmetrics' FID Inception v3 (2048-d pool features) with weights from `inception_weights_path`,
    checked and read by `load_inception_state_dict`."""
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as error:
        raise ImportError("FID needs torch-fidelity: pip install torch-fidelity") from error
    path = inception_weights_path(weights, download=download)
    state_dict = load_inception_state_dict(path)
    # torch-fidelity's constructor reads its weights with torch.load(weights_only=False), from a file
    # or the network. It gets an in-memory copy of the checked tensors instead, written here: nothing
    # the user's file holds is unpickled outside weights_only loading.
    checked = io.BytesIO()
    torch.save(state_dict, checked)
    checked.seek(0)
    del state_dict
    try:
        return NoTrainInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=checked)
    except ModuleNotFoundError as error:
        raise ImportError("FID needs torch-fidelity: pip install torch-fidelity") from error
    except (RuntimeError, KeyError) as error:  # load_state_dict: keys or shapes of another network
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InceptionWeightsError(f"{path} is not a valid FID Inception weights file ({reason})") from None


class _Precomputed(nn.Module):
    """Identity 'extractor' so that both metrics take the features we computed once."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@dataclass
class DistributionScores:
    """FID and KID (mean, std over subsets) between real and translated images."""

    fid: float
    kid_mean: float
    kid_std: float
    num_real: int
    num_fake: int


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, 1 or 3, H, W) in [-1, 1] -> (N, 3, H, W) uint8, what FID extractors take."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class FeatureSets:
    """Features of real and fake images, accumulated batch by batch."""

    def __init__(self, extractor: nn.Module) -> None:
        self.extractor = extractor.eval()
        self.real: list[torch.Tensor] = []
        self.fake: list[torch.Tensor] = []

    @torch.no_grad()
    def add(self, images: torch.Tensor, *, real: bool) -> None:
        """Add (N, C, H, W) images in [-1, 1]."""
        device = module_device(self.extractor)
        features = self.extractor(to_uint8_rgb(images).to(device))
        features = features.reshape(features.shape[0], -1).double().cpu()
        (self.real if real else self.fake).append(features)

    def scores(self, *, kid_subsets: int = 100, kid_subset_size: int = 1000) -> DistributionScores:
        """FID and KID of the accumulated sets (each needs at least 2 images)."""
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        real, fake = torch.cat(self.real), torch.cat(self.fake)
        if len(real) < 2 or len(fake) < 2:
            raise ValueError(
                f"FID/KID need at least 2 real and 2 translated images, got {len(real)} and {len(fake)}"
            )
        identity = _Precomputed(real.shape[1])
        fid = FrechetInceptionDistance(feature=identity).double()
        subset_size = min(kid_subset_size, len(real), len(fake))
        with warnings.catch_warnings():  # KID warns that it keeps all features: we hold them anyway
            warnings.simplefilter("ignore", UserWarning)
            kid = KernelInceptionDistance(
                feature=identity, subsets=kid_subsets, subset_size=subset_size
            ).double()
        for metric in (fid, kid):
            metric.update(real, real=True)
            metric.update(fake, real=False)
        kid_mean, kid_std = kid.compute()
        return DistributionScores(float(fid.compute()), float(kid_mean), float(kid_std), len(real), len(fake))


def score_translations(
    extractor: nn.Module,
    real_batches: Iterable[torch.Tensor],
    fake_batches: Iterable[torch.Tensor],
    *,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
) -> DistributionScores:
    """FID / KID between batches of real target-domain images and batches of translated images."""
    sets = FeatureSets(extractor)
    for batch in real_batches:
        sets.add(batch, real=True)
    for batch in fake_batches:
        sets.add(batch, real=False)
    return sets.scores(kid_subsets=kid_subsets, kid_subset_size=kid_subset_size)
