"""DeepLab v3 decode head (Chen et al., arXiv 1706.05587, sec. 3.3): ASPP -> 1x1 classifier.

ASPP: a 1x1 conv, three 3x3 atrous convs (rates (6, 12, 18) at output stride 16, doubled at 8) and
image pooling, each 256 wide with BN + ReLU, concatenated and projected by a 1x1 conv 256 + BN +
ReLU; then a 1x1 conv -> K. ``bottleneck=True`` adds the 3x3 conv 256 + BN + ReLU that
torchvision's ``DeepLabHead`` (and mmseg) put after the ASPP; the paper has none.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from segzoo.models.heads.base import DecodeHead
from segzoo.models.layers import ASPP, ConvNormAct
from segzoo.registry import HEADS


@HEADS.register("aspp_head", paper="Chen et al., Rethinking Atrous Convolution (DeepLab v3), 2017")
class ASPPHead(DecodeHead):
    """DeepLab v3 head on the deepest backbone feature.

    Args:
        in_channels: channels of ``features[in_index]``.
        num_classes: K.
        channels: ASPP width (256).
        atrous_rates: dilations of the 3x3 branches.
        image_pooling: include the image-level branch.
        separable: depthwise separable atrous branches (as in v3+).
        bottleneck: torchvision's extra 3x3 conv after the ASPP.
        aspp_dropout: dropout after the ASPP projection (torchvision 0.5, TF reference 0.1).
        dropout: dropout before the classifier (0: none, as the paper and torchvision).
        norm: ``"bn"``, ``"syncbn"``, ``"gn"`` or ``None``.
        in_index: which feature to read (-1).

    Shapes: (B, in_channels, h, w) -> logits (B, K, h, w).

    Raises (on forward):
        ValueError: BatchNorm in training mode with a batch of one (image pooling).
    """

    def __init__(self, in_channels: int, num_classes: int, *, channels: int = 256,
                 atrous_rates: Sequence[int] = (6, 12, 18), image_pooling: bool = True,
                 separable: bool = False, bottleneck: bool = False, aspp_dropout: float = 0.1,
                 dropout: float = 0.0, norm: str | None = "bn", in_index: int = -1) -> None:
        super().__init__(channels, num_classes, dropout=dropout, in_index=in_index)
        self.aspp = ASPP(in_channels, channels, atrous_rates, image_pooling=image_pooling,
                         separable=separable, norm=norm, dropout=aspp_dropout)
        self.bottleneck = ConvNormAct(channels, channels, 3, norm=norm) if bottleneck else nn.Identity()

    def features(self, inputs: list[Tensor]) -> Tensor:
        return self.bottleneck(self.aspp(inputs[self.in_index]))
