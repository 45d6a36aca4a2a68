"""VGG-16 (Simonyan & Zisserman, ICLR 2015) as a 5-stage backbone, torchvision layout.

The convolutional part keeps torchvision's module names (``features.0.weight`` ...), so an
ImageNet checkpoint of ``torchvision.models.vgg16`` / ``vgg16_bn`` loads unchanged. The fully
connected layers are not part of the backbone: FCN converts them into its fc6/fc7 convolutions
(see :mod:`segzoo.models.heads.fcn_skip_head`).
"""

from __future__ import annotations

import os

from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from segzoo.models.backbones.base import Backbone
from segzoo.models.weights import load_state_dict, load_weights
from segzoo.registry import BACKBONES


class VGGBackbone(Backbone):
    """VGG feature extractor returning the output of each max-pool (pool1 ... pool5).

    Output: 5 maps with strides (2, 4, 8, 16, 32) and channels (64, 128, 256, 512, 512).
    Inputs need H, W >= 32 so that pool5 is at least 1x1.

    Args:
        features: torchvision's ``vgg*.features`` Sequential.
        weights: optional path or URL of a torchvision VGG state dict (``classifier.*`` keys are
            ignored here; FCN builders convert them).
    """

    out_channels = (64, 128, 256, 512, 512)
    out_strides = (2, 4, 8, 16, 32)

    def __init__(self, features: nn.Sequential, weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.features = features
        for m in features.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.stage_ends = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        if len(self.stage_ends) != 5:
            raise ValueError("expected a VGG feature stack with 5 max-pool layers")
        if weights is not None:
            load_weights(self, load_state_dict(weights), source=str(weights))

    def forward(self, images: Tensor) -> list[Tensor]:
        outs = []
        x = images
        ends = set(self.stage_ends)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in ends:
                outs.append(x)
        return outs


@BACKBONES.register("vgg16", paper="Simonyan & Zisserman, ICLR 2015")
def vgg16(*, weights: str | None = None) -> VGGBackbone:
    """VGG-16 without batch norm (as in FCN). ``weights``: path/URL of torchvision vgg16 weights."""
    return VGGBackbone(make_layers(cfgs["D"], batch_norm=False), weights)


@BACKBONES.register("vgg16_bn", paper="Simonyan & Zisserman, ICLR 2015 (+BN, Ioffe & Szegedy 2015)")
def vgg16_bn(*, weights: str | None = None) -> VGGBackbone:
    """VGG-16 with batch norm after every conv (trains from scratch far better than plain VGG)."""
    return VGGBackbone(make_layers(cfgs["D"], batch_norm=True), weights)
