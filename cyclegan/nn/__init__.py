"""Networks built on our InstanceNorm: generators, discriminators, init, reference-weight import."""

from cyclegan.nn.batchnorm import (
    BATCHNORM_MODES,
    ImageStatisticsBatchNorm2d,
    batchnorm_mode,
    has_batchnorm,
    set_batchnorm_mode,
)
from cyclegan.nn.discriminators import NLayerDiscriminator, PixelDiscriminator
from cyclegan.nn.factory import DISCRIMINATOR_ARCHS, GENERATOR_ARCHS, build_discriminator, build_generator
from cyclegan.nn.init import INIT_TYPES, init_weights
from cyclegan.nn.norm import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d
from cyclegan.nn.reference_weights import (
    infer_reference_spec,
    load_reference_state_dict,
    load_reference_weights,
)
from cyclegan.nn.resnet import ResnetBlock, ResnetGenerator
from cyclegan.nn.style_transfer import StyleTransferNetwork
from cyclegan.nn.unet import UnetGenerator, UnetSkipConnectionBlock

__all__ = [
    "BATCHNORM_MODES",
    "DISCRIMINATOR_ARCHS",
    "GENERATOR_ARCHS",
    "INIT_TYPES",
    "ImageStatisticsBatchNorm2d",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "StyleTransferNetwork",
    "UnetGenerator",
    "UnetSkipConnectionBlock",
    "batchnorm_mode",
    "build_discriminator",
    "build_generator",
    "has_batchnorm",
    "infer_reference_spec",
    "init_weights",
    "load_reference_state_dict",
    "load_reference_weights",
    "set_batchnorm_mode",
]
