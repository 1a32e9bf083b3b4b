"""InstanceNorm layers built on ``cyclegan.ops.instance_norm``, drop-in for ``torch.nn.InstanceNorm*d``."""

from __future__ import annotations

import torch
from torch import nn

from cyclegan.ops import ACTIVATIONS, BACKENDS, instance_norm

# Keys old checkpoints (track_running_stats) carry for InstanceNorm layers; instance norm never uses them.
RUNNING_STAT_KEYS = ("running_mean", "running_var", "num_batches_tracked")


class _InstanceNorm(nn.Module):
    """Shared body of the 1-D, 2-D and 3-D layers; subclasses fix the expected input rank."""

    _rank: int = 4

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        affine: bool = False,
        activation: str | None = None,
        negative_slope: float = 0.2,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.num_features = num_features
        self.eps = eps
        self.affine = affine
        self.activation = activation
        self.negative_slope = negative_slope
        self.backend = backend
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """Normalize ``x``, apply the affine map and activation, then add ``residual`` if given."""
        if x.dim() != self._rank:
            raise ValueError(
                f"{type(self).__name__} expects input of rank {self._rank}, got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) got input with {x.shape[1]} channels"
            )
        return instance_norm(
            x,
            self.weight,
            self.bias,
            self.eps,
            activation=self.activation,
            negative_slope=self.negative_slope,
            residual=residual,
            backend=self.backend,
        )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # Old checkpoints (and torch.nn.InstanceNorm with track_running_stats) carry running statistics
        # that instance normalization never uses: drop them instead of failing a strict load.
        for key in RUNNING_STAT_KEYS:
            state_dict.pop(prefix + key, None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        text = f"{self.num_features}, eps={self.eps}, affine={self.affine}"
        if self.activation is not None:
            text += f", activation={self.activation!r}"
            if self.activation == "leaky_relu":
                text += f", negative_slope={self.negative_slope}"
        if self.backend != "auto":
            text += f", backend={self.backend!r}"
        return text


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization over ``(N, C, L)`` inputs."""

    _rank = 3


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization over ``(N, C, H, W)`` inputs, with optional fused activation and residual."""

    _rank = 4


class InstanceNorm3d(_InstanceNorm):
    """Instance normalization over ``(N, C, D, H, W)`` inputs."""

    _rank = 5
