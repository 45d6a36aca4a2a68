"""Backbones: multi-scale feature extractors registered in :data:`segzoo.registry.BACKBONES`.

Names: ``vgg16``, ``vgg16_bn``, ``resnet18/34/50/101``, ``mobilenet_v2``, ``xception65/71``,
``unet_encoder``, and any timm model as ``timm:<name>`` or ``tu-<name>``.
"""

from segzoo.models.backbones.base import Backbone
from segzoo.models.backbones.mobilenet import MobileNetV2Backbone, mobilenet_v2
from segzoo.models.backbones.resnet import ResNetBackbone, resnet18, resnet34, resnet50, resnet101
from segzoo.models.backbones.timm_adapter import TimmBackbone, xception65, xception71
from segzoo.models.backbones.unet_encoder import UNetEncoder, unet_encoder
from segzoo.models.backbones.vgg import VGGBackbone, vgg16, vgg16_bn
from segzoo.registry import BACKBONES


def build_backbone(name: str, **kwargs) -> Backbone:
    """Build the backbone registered as ``name`` (see ``segzoo.list_backbones()``; also
    ``timm:<name>`` / ``tu-<name>`` for any timm model)."""
    return BACKBONES.build(name, **kwargs)


__all__ = [
    "Backbone",
    "MobileNetV2Backbone",
    "ResNetBackbone",
    "TimmBackbone",
    "UNetEncoder",
    "VGGBackbone",
    "build_backbone",
    "mobilenet_v2",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "unet_encoder",
    "vgg16",
    "vgg16_bn",
    "xception65",
    "xception71",
]
