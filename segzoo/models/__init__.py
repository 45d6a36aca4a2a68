"""Models of the zoo. Importing this package registers every backbone, head and model."""

from segzoo.models import backbones, detectors, heads, necks, segmentors  # noqa: F401  (registration)
from segzoo.models.api import build_model, list_backbones, list_models
from segzoo.models.backbones import Backbone, build_backbone
from segzoo.models.convert import from_torchvision
from segzoo.models.detectors import MaskRCNN, maskrcnn
from segzoo.models.heads import describe_heads
from segzoo.models.segmentors import (
    EncoderDecoder,
    UNet,
    deeplabv2,
    deeplabv3,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
    deeplabv3plus,
    encoder_decoder,
    fcn,
    fcn8s,
    fcn16s,
    fcn32s,
    fcn_resnet50,
    fcn_resnet101,
    pspnet,
    unet,
)

__all__ = [
    "Backbone",
    "EncoderDecoder",
    "MaskRCNN",
    "UNet",
    "build_backbone",
    "build_model",
    "deeplabv2",
    "deeplabv3",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3plus",
    "describe_heads",
    "encoder_decoder",
    "fcn",
    "fcn8s",
    "fcn16s",
    "fcn32s",
    "fcn_resnet50",
    "fcn_resnet101",
    "from_torchvision",
    "list_backbones",
    "list_models",
    "maskrcnn",
    "pspnet",
    "unet",
]
