"""Which statistics a network's BatchNorm layers normalize with outside training (pix2pix's generators).

``image``: each image's own per-channel mean and variance, what BatchNorm computes in training mode on a
batch of one. The pix2pix paper and the reference's ``test.py`` (without ``--eval``) run the generator
this way, so a model trained with batch size 1 sees at test time exactly what it saw in training. Unlike
the reference, the result does not depend on which images share a batch, and dropout stays off (the
reference leaves it on, making every output random).
``running``: the running statistics accumulated in training (the reference's ``--eval``); usually the
better choice for a model trained with large batches.

Networks without BatchNorm (every InstanceNorm network) are unaffected by either.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from cyclegan.nn.layers import check_choice

BATCHNORM_MODES = ("image", "running")


class ImageStatisticsBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that normalizes each image with its own statistics (in any mode, for any batch size),
    leaving its running statistics unused and unchanged. Same parameters and buffers as BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def has_batchnorm(net: nn.Module) -> bool:
    """Whether ``net`` has a BatchNorm2d layer (of either mode)."""
    return any(isinstance(module, nn.BatchNorm2d) for module in net.modules())


def set_batchnorm_mode(net: nn.Module, mode: str) -> nn.Module:
    """Make every BatchNorm2d layer of ``net`` normalize with ``mode``'s statistics (see the module
    docstring); returns ``net``. The layers keep their parameters, buffers and state_dict keys."""
    check_choice("batchnorm", mode, BATCHNORM_MODES)
    layer_class = ImageStatisticsBatchNorm2d if mode == "image" else nn.BatchNorm2d
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.__class__ = layer_class
    return net


@contextmanager
def batchnorm_mode(net: nn.Module, mode: str) -> Iterator[nn.Module]:
    """``net`` with its BatchNorm layers in ``mode`` while inside, plain BatchNorm2d again afterwards."""
    try:
        yield set_batchnorm_mode(net, mode)
    finally:
        set_batchnorm_mode(net, "running")
