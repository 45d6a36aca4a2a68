"""MobileNetV2 (Sandler et al., CVPR 2018) as a dilatable backbone, torchvision layout.

The module is torchvision's ``mobilenet_v2().features`` under the name ``features``, so its
ImageNet checkpoint (``features.*`` keys; the ``classifier.*`` keys are skipped) and the shared
``weights/mobilenet_v2_imagenet_features.safetensors`` load unchanged.

Output stride 16 or 8 (the DeepLab mobile variant, DeepLab v3 sec. 4 / v3+ sec. 4): the inverted
residual blocks that would pass ``output_stride`` keep stride 1; the first such block keeps the
previous rate and every later depthwise conv gets the dilation (2 at OS 16; 2 then 4 at OS 8), as
the TF DeepLab reference (``current_stride == output_stride`` -> rate) and our ResNets do.
"""

from __future__ import annotations

from typing import Literal

import torchvision
from torch import Tensor, nn
from torchvision.models.mobilenetv2 import InvertedResidual

from segzoo.models.backbones.base import Backbone
from segzoo.models.weights import load_state_dict, load_weights
from segzoo.registry import BACKBONES

# last block of each stride stage of torchvision's features (strides 2, 4, 8, 16, 32)
_TAPS = (1, 3, 6, 13, 18)


def _depthwise(block: InvertedResidual) -> nn.Conv2d:
    for m in block.conv.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            return m
    raise TypeError("inverted residual block without a depthwise conv")


class MobileNetV2Backbone(Backbone):
    """MobileNetV2 feature extractor.

    Output: 5 maps with channels (16, 24, 32, 96, 1280) (the last after the final 1x1 conv) and
    strides (2, 4, 8, 16, 32) at ``output_stride=32``, (2, 4, 8, 16, 16) at 16, (2, 4, 8, 8, 8)
    at 8.

    Args:
        output_stride: 8, 16 or 32.
        weights: path or URL of a torchvision MobileNetV2 (or ``features``-only) state dict.

    Raises:
        ValueError: an unsupported ``output_stride``.
        WeightsError: weights that do not fit (missing keys or shape mismatches listed).
    """

    out_channels = (16, 24, 32, 96, 1280)

    def __init__(self, *, output_stride: int = 32, weights: str | None = None) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"MobileNetV2 output_stride must be 8, 16 or 32, got {output_stride}")
        self.features = torchvision.models.mobilenet_v2(weights=None).features
        stride, rate = 2, 1  # features[0] is the stride-2 stem conv
        for block in self.features:
            if not isinstance(block, InvertedResidual):
                continue
            dw = _depthwise(block)
            block_rate = rate
            if block.stride == 2:
                if stride == output_stride:
                    dw.stride = (1, 1)
                    block.stride = 1
                    rate *= 2
                else:
                    stride *= 2
            dw.dilation = (block_rate, block_rate)
            dw.padding = (block_rate, block_rate)
        self.output_stride = output_stride
        self.out_strides = (2, 4, 8, min(16, output_stride), output_stride)
        if weights is not None:
            load_weights(self, load_state_dict(weights), source=str(weights))

    def forward(self, images: Tensor) -> list[Tensor]:
        outs = []
        x = images
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                outs.append(x)
        return outs


@BACKBONES.register("mobilenet_v2", paper="Sandler et al., MobileNetV2, CVPR 2018")
def mobilenet_v2(*, weights: str | None = None,
                 output_stride: Literal[8, 16, 32] = 32) -> MobileNetV2Backbone:
    """MobileNetV2 (2.2M parameters). ``weights``: e.g.
    ``weights/mobilenet_v2_imagenet_features.safetensors`` (found under the shared data folder)."""
    return MobileNetV2Backbone(output_stride=output_stride, weights=weights)
