"""Weight initialization as CycleGAN trains with it: conv weights from a chosen scheme, biases 0,
norm weights ~ N(1, gain), norm biases 0."""

from __future__ import annotations

import torch
from torch import nn

from cyclegan.errors import check_choice, check_number
from cyclegan.nn.norm import InstanceNorm2d

INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_NORMS = (nn.BatchNorm2d, InstanceNorm2d)


@torch.no_grad()
def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialize ``net`` in place and return it.

    Conv/linear weights: ``normal`` N(0, gain), ``xavier`` Xavier-normal with ``gain``, ``kaiming``
    Kaiming-normal (fan_in, a=0; ``gain`` unused, as in the reference), ``orthogonal`` with ``gain``.
    Their biases are 0. Norm layers with parameters get weight ~ N(1, gain) and bias 0.
    """
    check_choice("init_type", init_type, INIT_TYPES, what="initialization")
    check_number("init_gain", gain, minimum=0)
    for module in net.modules():
        if isinstance(module, _WEIGHTED):
            if init_type == "normal":
                nn.init.normal_(module.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(module.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(module.weight, gain=gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _NORMS) and module.weight is not None:
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return net
