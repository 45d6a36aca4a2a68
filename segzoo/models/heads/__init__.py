"""Decode and auxiliary heads, registered in :data:`segzoo.registry.HEADS`."""

from segzoo.models.heads.aspp_head import ASPPHead
from segzoo.models.heads.aspp_v2 import ASPPv2Head
from segzoo.models.heads.base import DecodeHead
from segzoo.models.heads.deeplabv3plus_head import DeepLabV3PlusHead
from segzoo.models.heads.fcn_head import FCNHead
from segzoo.models.heads.fcn_skip import FCNSkipHead, vgg_classifier_to_fc
from segzoo.models.heads.psp_head import PSPHead
from segzoo.models.heads.unet_head import UNetHead, UpBlock

__all__ = [
    "ASPPHead",
    "ASPPv2Head",
    "DecodeHead",
    "DeepLabV3PlusHead",
    "FCNHead",
    "FCNSkipHead",
    "PSPHead",
    "UNetHead",
    "UpBlock",
    "vgg_classifier_to_fc",
]
