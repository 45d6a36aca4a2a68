"""Complete models (segmentors) assembled from backbones and heads."""

from segzoo.models.segmentors.encoder_decoder import EncoderDecoder
from segzoo.models.segmentors.fcn import fcn8s, fcn16s, fcn32s

__all__ = ["EncoderDecoder", "fcn8s", "fcn16s", "fcn32s"]
