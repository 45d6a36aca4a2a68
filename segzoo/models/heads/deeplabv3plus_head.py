"""DeepLab v3+ decoder (Chen et al., ECCV 2018, sec. 3.1, Fig. 2).

Encoder: DeepLab v3's ASPP (1x1 projection to 256) on the deepest feature (output stride 16).
Decoder: the encoder output upsampled bilinearly to the stride-4 low-level feature, which a 1x1
conv + BN + ReLU reduces to 48 channels; concatenation, two 3x3 convs of 256 (+ BN + ReLU),
1x1 -> K at stride 4; the segmentor upsamples x4 to the input. ``separable=True`` (the paper's
best model) makes the ASPP's atrous branches and the decoder's 3x3 convs depthwise separable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from segzoo.models.heads.base import DecodeHead
from segzoo.models.layers import ASPP, ConvNormAct, conv_block, resize
from segzoo.registry import HEADS


@HEADS.register("deeplabv3plus_head", paper="Chen et al., Encoder-Decoder with Atrous Separable "
                "Convolution (DeepLab v3+), ECCV 2018")
class DeepLabV3PlusHead(DecodeHead):
    """ASPP + low-level decoder.

    Args:
        in_channels: channels of every backbone feature (the head reads two of them).
        num_classes: K.
        low_level_index: index of the low-level (stride-4) feature.
        low_level_channels: its 1x1 projection width (48; the paper's ablation, Table 1).
        channels: ASPP and decoder width (256).
        atrous_rates: ASPP rates ((6, 12, 18) at output stride 16).
        separable: depthwise separable convs in ASPP and decoder.
        aspp_dropout: after the ASPP projection (TF reference: 0.1).
        dropout: before the classifier (0).
        norm: ``"bn"``, ``"syncbn"``, ``"gn"`` or ``None``.
        in_index: the deep feature (-1).

    Shapes: features[in_index] (B, C, H/16, W/16) and features[low_level_index]
    (B, C_low, H/4, W/4) -> logits (B, K, H/4, W/4).
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, low_level_index: int,
                 low_level_channels: int = 48, channels: int = 256,
                 atrous_rates: Sequence[int] = (6, 12, 18), separable: bool = True,
                 aspp_dropout: float = 0.1, dropout: float = 0.0, norm: str | None = "bn",
                 in_index: int = -1) -> None:
        super().__init__(channels, num_classes, dropout=dropout, in_index=in_index)
        self.low_level_index = low_level_index
        self.aspp = ASPP(in_channels[in_index], channels, atrous_rates, separable=separable,
                         norm=norm, dropout=aspp_dropout)
        self.low_level = ConvNormAct(in_channels[low_level_index], low_level_channels, 1, norm=norm)
        self.decoder = nn.Sequential(
            conv_block(channels + low_level_channels, channels, 3, separable=separable, norm=norm),
            conv_block(channels, channels, 3, separable=separable, norm=norm),
        )

    def features(self, inputs: list[Tensor]) -> Tensor:
        low = self.low_level(inputs[self.low_level_index])
        x = resize(self.aspp(inputs[self.in_index]), low.shape[-2:])
        return self.decoder(torch.cat([x, low], dim=1))
