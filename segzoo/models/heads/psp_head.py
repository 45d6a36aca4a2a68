"""PSPNet decode head (Zhao et al., CVPR 2017, sec. 3.2, Fig. 3).

Pyramid pooling (bins 1, 2, 3, 6; each 1x1 conv to C/4 + BN + ReLU, upsampled, concatenated with
the input: 2048 + 4 x 512), a 3x3 conv 512 + BN + ReLU, dropout 0.1, 1x1 conv -> K.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from segzoo.models.heads.base import DecodeHead
from segzoo.models.heads.wiring import FeatureInfo
from segzoo.models.layers import ConvNormAct, NormName, PyramidPooling
from segzoo.registry import HEADS

_PAPER = "Zhao et al., Pyramid Scene Parsing Network, CVPR 2017"


class PSPHead(DecodeHead):
    """Args:
        in_channels: channels of ``features[in_index]`` (2048 for ResNet-50/101).
        num_classes: K.
        bins: pooled grid sizes (1, 2, 3, 6).
        channels: width of the 3x3 conv after the pyramid (512).
        ppm_channels: width of each pooled branch (default ``in_channels // len(bins)``).
        dropout: before the classifier (0.1).
        norm: ``"bn"``, ``"syncbn"``, ``"gn"`` or ``None``.
        in_index: which feature to read (-1).

    Shapes: (B, in_channels, h, w) -> logits (B, K, h, w).

    Raises (on forward):
        ValueError: BatchNorm in training mode with a batch of one (the 1x1 bin).
    """

    def __init__(self, in_channels: int, num_classes: int, *, bins: Sequence[int] = (1, 2, 3, 6),
                 channels: int = 512, ppm_channels: int | None = None, dropout: float = 0.1,
                 norm: str | None = "bn", in_index: int = -1) -> None:
        super().__init__(channels, num_classes, dropout=dropout, in_index=in_index)
        self.ppm = PyramidPooling(in_channels, ppm_channels, bins, norm=norm)
        self.bottleneck = ConvNormAct(self.ppm.out_channels, channels, 3, norm=norm)

    def features(self, inputs: list[Tensor]) -> Tensor:
        return self.bottleneck(self.ppm(inputs[self.in_index]))


@HEADS.register("psp_head", paper=_PAPER, reads="one feature: in_index (-1, the deepest)")
def psp_head(features: FeatureInfo, num_classes: int, /, *, bins: tuple[int, ...] = (1, 2, 3, 6),
             channels: int = 512, ppm_channels: int | None = None, dropout: float = 0.1,
             norm: NormName | None = "bn", in_index: int = -1) -> PSPHead:
    """:class:`PSPHead` on ``features[in_index]`` of any backbone (options as the class).

    Raises:
        ValueError: ``in_index`` out of range for the backbone's feature levels.
    """
    i = features.index(in_index, head="psp_head")
    return PSPHead(features.channels[i], num_classes, bins=bins, channels=channels,
                   ppm_channels=ppm_channels, dropout=dropout, norm=norm, in_index=in_index)
