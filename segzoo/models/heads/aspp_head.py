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
from segzoo.models.heads.wiring import FeatureInfo, as_tuple, incompatible
from segzoo.models.layers import ASPP, ConvNormAct, NormName, scaled_rates
from segzoo.registry import HEADS

_PAPER = "Chen et al., Rethinking Atrous Convolution (DeepLab v3), 2017"


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


def aspp_rates(features: FeatureInfo, index: int, atrous_rates: Sequence[int] | None, *,
               head: str) -> tuple[int, ...]:
    """The ASPP rates for the feature at ``index``: ``atrous_rates`` if given, else the paper's
    (6, 12, 18) at stride 16 scaled to its stride (12, 24, 36 at 8; 3, 6, 9 at 32).

    Raises:
        ValueError: the feature's stride is below 8 (atrous rates are meant for output stride
            8, 16 or 32: a stride-4 map would need rates of 24-72 pixels).
    """
    stride = features.strides[index]
    if stride < 8:
        raise incompatible(head, features, f"its ASPP would read a stride-{stride} feature "
                           f"(in_index={index}), output stride {stride}",
                           "ASPP works at output stride 8, 16 or 32: read a deeper feature or use a "
                           "backbone whose deepest feature is at stride >= 8")
    return as_tuple(atrous_rates) if atrous_rates is not None else scaled_rates(stride)


@HEADS.register("aspp_head", paper=_PAPER,
                reads="one feature: in_index (-1, the deepest), at stride 8, 16 or 32")
def aspp_head(features: FeatureInfo, num_classes: int, /, *, channels: int = 256,
              atrous_rates: tuple[int, ...] | None = None, image_pooling: bool = True,
              separable: bool = False, bottleneck: bool = False, aspp_dropout: float = 0.1,
              dropout: float = 0.0, norm: NormName | None = "bn", in_index: int = -1) -> ASPPHead:
    """:class:`ASPPHead` on ``features[in_index]``; ``atrous_rates`` default to (6, 12, 18)
    scaled by 16 / that feature's stride (DeepLab v3 sec. 4.1). Other options as the class.

    Raises:
        ValueError: ``in_index`` out of range, or a feature at stride < 8.
    """
    i = features.index(in_index, head="aspp_head")
    rates = aspp_rates(features, i, atrous_rates, head="aspp_head")
    return ASPPHead(features.channels[i], num_classes, channels=channels, atrous_rates=rates,
                    image_pooling=image_pooling, separable=separable, bottleneck=bottleneck,
                    aspp_dropout=aspp_dropout, dropout=dropout, norm=norm, in_index=in_index)
