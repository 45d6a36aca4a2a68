"""Backbones: multi-scale feature extractors registered in :data:`segzoo.registry.BACKBONES`."""

from segzoo.models.backbones.base import Backbone
from segzoo.models.backbones.vgg import VGGBackbone, vgg16, vgg16_bn
from segzoo.registry import BACKBONES


def build_backbone(name: str, **kwargs) -> Backbone:
    """Build the backbone registered as ``name`` (see ``segzoo.list_backbones()``)."""
    return BACKBONES.build(name, **kwargs)


__all__ = ["Backbone", "VGGBackbone", "vgg16", "vgg16_bn", "build_backbone"]
