"""Feature Pyramid Network neck (Lin et al., CVPR 2017) on any registered backbone.

torchvision's :class:`~torchvision.ops.FeaturePyramidNetwork` (lateral 1x1 convs, top-down nearest
upsampling and addition, 3x3 output convs) plus :class:`~torchvision.ops.feature_pyramid_network.LastLevelMaxPool`
(P6 = max-pool of P5 with stride 2, used by the RPN only), fed with the backbone features of
stride >= ``min_stride`` (ResNet: C2..C5 at strides 4, 8, 16, 32). The module keeps torchvision's
parameter names (``inner_blocks.i.0``, ``layer_blocks.i.0``), so the ``backbone.fpn.*`` weights of
torchvision's ``maskrcnn_resnet50_fpn`` load as ``neck.*``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from segzoo.models.heads.wiring import FeatureInfo
from segzoo.registry import NECKS


class FPN(FeaturePyramidNetwork):
    """FPN over selected backbone levels.

    Args:
        in_channels: channels of every backbone feature (``backbone.out_channels``).
        in_strides: strides of every backbone feature (``backbone.out_strides``).
        out_channels: width of every pyramid level (256 in the paper).
        min_stride: the finest backbone feature used (4: ResNet's C2; the stride-2 stem is left out).
        max_pool_level: add P6 by max-pooling the coarsest level (torchvision's ``LastLevelMaxPool``).

    ``forward(features)`` takes the backbone's list of maps and returns an ``OrderedDict``
    ``{"0": P2, "1": P3, ..., "pool": P6}`` of (B, out_channels, H / s, W / s) maps, the names
    torchvision's RPN and ``MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"])`` expect.
    ``self.strides`` lists the output strides (P6 doubles the last one).

    Raises:
        ValueError: fewer than two usable levels, or repeated strides (a dilated backbone: build it
            with output_stride 32).
    """

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], *, out_channels: int = 256,
                 min_stride: int = 4, max_pool_level: bool = True) -> None:
        idx = [i for i, s in enumerate(in_strides) if s >= min_stride]
        strides = [int(in_strides[i]) for i in idx]
        if len(idx) < 2:
            raise ValueError(f"FPN needs at least two backbone levels of stride >= {min_stride}; "
                             f"the backbone has strides {tuple(in_strides)}")
        if len(set(strides)) != len(strides):
            raise ValueError(f"FPN needs one backbone level per stride, got strides {tuple(strides)} "
                             "(a dilated backbone? build it with output_stride 32)")
        super().__init__([int(in_channels[i]) for i in idx], out_channels,
                         extra_blocks=LastLevelMaxPool() if max_pool_level else None)
        self.in_indices = idx
        self.out_channels = out_channels
        self.strides = tuple(strides) + ((2 * strides[-1],) if max_pool_level else ())
        self.featmap_names = [str(i) for i in range(len(idx))]  # the levels RoIs are pooled from

    def forward(self, features: list[Tensor]) -> OrderedDict[str, Tensor]:  # type: ignore[override]
        x = OrderedDict((str(k), features[i]) for k, i in enumerate(self.in_indices))
        return super().forward(x)


@NECKS.register("fpn", paper="Lin et al., Feature Pyramid Networks for Object Detection, CVPR 2017")
def fpn(features: FeatureInfo, /, *, out_channels: int = 256, min_stride: int = 4,
        max_pool_level: bool = False) -> FPN:
    """:class:`FPN` over a backbone's features, as the ``neck`` of a composed semantic model:
    the heads then read ``out_channels``-wide levels at the backbone's strides from ``min_stride``
    (ResNet: 4, 8, 16, 32). ``max_pool_level`` adds P6 (used by detectors' RPNs, off here).

    Raises:
        ValueError: fewer than two levels at ``min_stride`` or coarser, or a dilated backbone.
    """
    return FPN(features.channels, features.strides, out_channels=out_channels,
               min_stride=min_stride, max_pool_level=max_pool_level)
