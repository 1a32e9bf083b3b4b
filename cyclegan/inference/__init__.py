"""Inference: load generators from any checkpoint kind, translate images (whole or tiled), export, score."""

from cyclegan.inference.checkpoints import load_generator, open_generator
from cyclegan.inference.export import FORMATS, export_generator
from cyclegan.inference.metrics import InceptionWeightsError, inception_extractor
from cyclegan.inference.translation import translate

__all__ = [
    "FORMATS",
    "InceptionWeightsError",
    "export_generator",
    "inception_extractor",
    "load_generator",
    "open_generator",
    "translate",
]
