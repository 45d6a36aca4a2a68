"""The dilated-FCN head of torchvision's ``fcn_resnet50`` and the auxiliary head of PSPNet and
DeepLab (deep supervision, Zhao et al. CVPR 2017 sec. 3.3; Long et al. 2015 for the idea).

3x3 conv (in_channels -> in_channels / 4, 2048 -> 512) + norm + ReLU, dropout 0.1, 1x1 conv -> K.
"""

from __future__ import annotations

from torch import Tensor, nn

from segzoo.models.heads.base import DecodeHead
from segzoo.models.heads.wiring import FeatureInfo
from segzoo.models.layers import ConvNormAct, NormName
from segzoo.registry import HEADS


class FCNHead(DecodeHead):
    """Plain convolutional head on one backbone feature.

    Args:
        in_channels: channels of ``features[in_index]``.
        num_classes: K.
        channels: width of the 3x3 convs (default ``in_channels // 4``, torchvision's).
        num_convs: number of 3x3 conv + norm + ReLU layers (1 in torchvision).
        dropout: before the classifier (0.1).
        norm: ``"bn"``, ``"syncbn"``, ``"gn"`` or ``None``.
        in_index: which feature to read (-1 the deepest; -2 e.g. ResNet layer3 for an aux head).

    Shapes: features[in_index] (B, in_channels, h, w) -> logits (B, K, h, w).
    """

    def __init__(self, in_channels: int, num_classes: int, *, channels: int | None = None,
                 num_convs: int = 1, dropout: float = 0.1, norm: str | None = "bn",
                 in_index: int = -1) -> None:
        channels = channels or max(1, in_channels // 4)
        super().__init__(channels, num_classes, dropout=dropout, in_index=in_index)
        self.convs = nn.Sequential(*(
            ConvNormAct(in_channels if i == 0 else channels, channels, 3, norm=norm)
            for i in range(num_convs)
        ))

    def features(self, inputs: list[Tensor]) -> Tensor:
        return self.convs(inputs[self.in_index])


@HEADS.register("fcn_head", paper="Long et al., CVPR 2015; torchvision FCNHead",
                reads="one feature: in_index (-1, the deepest; -2 as an auxiliary head)")
def fcn_head(features: FeatureInfo, num_classes: int, /, *, channels: int | None = None,
             num_convs: int = 1, dropout: float = 0.1, norm: NormName | None = "bn",
             in_index: int = -1) -> FCNHead:
    """:class:`FCNHead` on ``features[in_index]`` of any backbone (options as the class).

    Raises:
        ValueError: ``in_index`` out of range for the backbone's feature levels.
    """
    i = features.index(in_index, head="fcn_head")
    return FCNHead(features.channels[i], num_classes, channels=channels, num_convs=num_convs,
                   dropout=dropout, norm=norm, in_index=in_index)
