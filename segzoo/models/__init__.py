"""Models of the zoo. Importing this package registers every backbone, head and model."""

from segzoo.models import backbones, heads, segmentors  # noqa: F401  (registration)
from segzoo.models.api import build_model, list_backbones, list_models
from segzoo.models.backbones import Backbone, build_backbone
from segzoo.models.segmentors import EncoderDecoder, fcn8s, fcn16s, fcn32s

__all__ = [
    "Backbone",
    "EncoderDecoder",
    "build_backbone",
    "build_model",
    "fcn8s",
    "fcn16s",
    "fcn32s",
    "list_backbones",
    "list_models",
]
