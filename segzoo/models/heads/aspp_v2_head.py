"""DeepLab v2 ASPP-L head (Chen et al., TPAMI 2017, sec. 3.3, Fig. 4(b)).

Four parallel 3x3 atrous convolutions (rates 6, 12, 18, 24) on the res5 features, each predicting
K class scores; the four score maps are **summed** (v3 concatenates features instead). This is the
ResNet-101 version of the public DeepLab v2 model. ``branch_channels`` gives the VGG-16 version
of the paper (each branch fc6 = 3x3 atrous conv -> C, fc7 = 1x1 C, fc8 = 1x1 K, ReLU + dropout 0.5
after fc6 and fc7; C = 1024 in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from segzoo.models.heads.wiring import FeatureInfo
from segzoo.registry import HEADS


class ASPPv2Head(nn.Module):
    """Summed class scores of parallel atrous branches.

    Args:
        in_channels: channels of ``features[in_index]`` (2048 for ResNet-101).
        num_classes: K.
        atrous_rates: one branch per rate ((6, 12, 18, 24): ASPP-L; (2, 4, 8, 12): ASPP-S).
        branch_channels: ``None`` for a single 3x3 conv per branch (ResNet version), else the
            fc6/fc7 width of the VGG version.
        dropout: after fc6/fc7 of the VGG version.
        in_index: which feature to read (-1).

    Shapes: (B, in_channels, h, w) -> logits (B, K, h, w).
    """

    def __init__(self, in_channels: int, num_classes: int, *,
                 atrous_rates: Sequence[int] = (6, 12, 18, 24), branch_channels: int | None = None,
                 dropout: float = 0.5, in_index: int = -1) -> None:
        super().__init__()
        if not atrous_rates or min(atrous_rates) < 1:
            raise ValueError(f"atrous_rates must be positive, got {tuple(atrous_rates)}")
        self.in_index = in_index
        self.atrous_rates = tuple(int(r) for r in atrous_rates)
        branches = []
        for r in self.atrous_rates:
            if branch_channels is None:
                branches.append(nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r))
            else:
                branches.append(nn.Sequential(
                    nn.Conv2d(in_channels, branch_channels, 3, padding=r, dilation=r),
                    nn.ReLU(inplace=True), nn.Dropout(dropout),
                    nn.Conv2d(branch_channels, branch_channels, 1), nn.ReLU(inplace=True), nn.Dropout(dropout),
                    nn.Conv2d(branch_channels, num_classes, 1),
                ))
        self.branches = nn.ModuleList(branches)
        for m in self.modules():  # the reference init: N(0, 0.01), bias 0
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, inputs: list[Tensor]) -> Tensor:
        x = inputs[self.in_index]
        return torch.stack([branch(x) for branch in self.branches]).sum(0)


@HEADS.register("aspp_v2_head", paper="Chen et al., DeepLab v2, TPAMI 2017",
                reads="one feature: in_index (-1, the deepest; rates made for output stride 8)")
def aspp_v2_head(features: FeatureInfo, num_classes: int, /, *,
                 atrous_rates: tuple[int, ...] = (6, 12, 18, 24), branch_channels: int | None = None,
                 dropout: float = 0.5, in_index: int = -1) -> ASPPv2Head:
    """:class:`ASPPv2Head` on ``features[in_index]`` (options as the class).

    Raises:
        ValueError: ``in_index`` out of range, or a non-positive rate.
    """
    i = features.index(in_index, head="aspp_v2_head")
    return ASPPv2Head(features.channels[i], num_classes, atrous_rates=atrous_rates,
                      branch_channels=branch_channels, dropout=dropout, in_index=in_index)
