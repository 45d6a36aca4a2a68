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

from segzoo.models.heads.aspp_head import aspp_rates
from segzoo.models.heads.base import DecodeHead
from segzoo.models.heads.wiring import FeatureInfo, incompatible
from segzoo.models.layers import ASPP, ConvNormAct, NormName, conv_block, resize
from segzoo.registry import HEADS

_PAPER = ("Chen et al., Encoder-Decoder with Atrous Separable Convolution (DeepLab v3+), "
          "ECCV 2018")


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


@HEADS.register("deeplabv3plus_head", paper=_PAPER,
                reads="the deepest feature (ASPP, stride 8-32) and the first stride-4 feature")
def deeplabv3plus_head(features: FeatureInfo, num_classes: int, /, *, low_level_stride: int = 4,
                       low_level_channels: int = 48, channels: int = 256,
                       atrous_rates: tuple[int, ...] | None = None, separable: bool = True,
                       aspp_dropout: float = 0.1, dropout: float = 0.0,
                       norm: NormName | None = "bn", in_index: int = -1) -> DeepLabV3PlusHead:
    """:class:`DeepLabV3PlusHead` wired to the backbone: the ASPP on ``features[in_index]``
    (rates default to (6, 12, 18) scaled to its stride), the decoder's low-level input the first
    feature at ``low_level_stride`` (4, the paper's). Other options as the class.

    Raises:
        ValueError: no feature at ``low_level_stride``, none deeper than it, or an ASPP feature
            at stride < 8.
    """
    head = "deeplabv3plus_head"
    i = features.index(in_index, head=head)
    low = next((j for j, s in enumerate(features.strides) if s == low_level_stride), None)
    if low is None:
        raise incompatible(head, features, f"its decoder needs a stride-{low_level_stride} "
                           "low-level feature", "use a backbone with a feature at that stride "
                           "or set low_level_stride to one of its strides")
    if features.strides[i] <= low_level_stride:
        raise incompatible(head, features, f"the ASPP feature (in_index={in_index}) is not "
                           f"deeper than the stride-{low_level_stride} low-level feature",
                           "read the deepest feature (in_index: -1)")
    rates = aspp_rates(features, i, atrous_rates, head=head)
    return DeepLabV3PlusHead(features.channels, num_classes, low_level_index=low,
                             low_level_channels=low_level_channels, channels=channels,
                             atrous_rates=rates, separable=separable, aspp_dropout=aspp_dropout,
                             dropout=dropout, norm=norm, in_index=in_index)
