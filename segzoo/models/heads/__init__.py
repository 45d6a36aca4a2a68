"""Decode and auxiliary heads. Each ``<x>_head.py`` holds a head module and registers its builder
``<x>_head(features, num_classes, /, **options)`` in :data:`segzoo.registry.HEADS`, which wires the
module to a backbone's (or neck's) ``out_channels`` / ``out_strides`` (:mod:`.wiring`) and raises
a ``ValueError`` naming head and backbone when they do not fit. :func:`describe_heads` lists what
each head reads and the backbones it accepts (``segzoo list heads``)."""

from segzoo.models.heads.aspp_head import ASPPHead, aspp_head
from segzoo.models.heads.aspp_v2_head import ASPPv2Head, aspp_v2_head
from segzoo.models.heads.base import DecodeHead
from segzoo.models.heads.deeplabv3plus_head import DeepLabV3PlusHead, deeplabv3plus_head
from segzoo.models.heads.describe import describe_heads, fitting_backbones
from segzoo.models.heads.fcn_head import FCNHead, fcn_head
from segzoo.models.heads.fcn_skip_head import FCNSkipHead, fcn_skip_head, vgg_classifier_to_fc
from segzoo.models.heads.psp_head import PSPHead, psp_head
from segzoo.models.heads.unet_head import UNetHead, UpBlock, unet_head
from segzoo.models.heads.wiring import FeatureInfo

__all__ = [
    "ASPPHead",
    "ASPPv2Head",
    "DecodeHead",
    "DeepLabV3PlusHead",
    "FCNHead",
    "FCNSkipHead",
    "FeatureInfo",
    "PSPHead",
    "UNetHead",
    "UpBlock",
    "aspp_head",
    "aspp_v2_head",
    "deeplabv3plus_head",
    "describe_heads",
    "fcn_head",
    "fcn_skip_head",
    "fitting_backbones",
    "psp_head",
    "unet_head",
    "vgg_classifier_to_fc",
]
