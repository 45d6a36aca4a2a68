"""Complete models (segmentors) assembled from backbones, necks and heads, and their builders.

Registered (``segzoo.list_models()``): ``encoder_decoder`` (any backbone + neck + decode_head +
auxiliary_head named in config, :mod:`.compose`) and the presets over it: ``fcn32s``, ``fcn16s``,
``fcn8s``, ``fcn``, ``unet``, ``deeplabv2``, ``deeplabv3``, ``deeplabv3plus``, ``pspnet``. The
torchvision-named builders (``fcn_resnet50``, ``deeplabv3_resnet50``, ...) are plain functions over
them.
"""

from segzoo.models.segmentors.compose import compose, encoder_decoder
from segzoo.models.segmentors.deeplabv2 import deeplabv2
from segzoo.models.segmentors.deeplabv3 import deeplabv3, deeplabv3_resnet50, deeplabv3_resnet101
from segzoo.models.segmentors.deeplabv3plus import deeplabv3plus
from segzoo.models.segmentors.encoder_decoder import EncoderDecoder
from segzoo.models.segmentors.fcn import fcn8s, fcn16s, fcn32s
from segzoo.models.segmentors.fcn_dilated import fcn, fcn_resnet50, fcn_resnet101
from segzoo.models.segmentors.pspnet import pspnet
from segzoo.models.segmentors.unet import UNet, unet

__all__ = [
    "EncoderDecoder",
    "UNet",
    "compose",
    "deeplabv2",
    "deeplabv3",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3plus",
    "encoder_decoder",
    "fcn",
    "fcn8s",
    "fcn16s",
    "fcn32s",
    "fcn_resnet50",
    "fcn_resnet101",
    "pspnet",
    "unet",
]
