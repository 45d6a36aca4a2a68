"""Pyramid Pooling Module (PSPNet, Zhao et al. CVPR 2017, sec. 3.2, Fig. 3).

Adaptive average pooling of the features to ``bins`` x ``bins`` for every bin size (1, 2, 3, 6 in
the paper), each followed by a 1x1 conv reducing to ``channels`` (C / 4 for four bins, 2048 -> 512)
with norm + ReLU, bilinearly upsampled back to the feature size and concatenated with the input.
The pooling is torch's adaptive average pooling computed from the input size
(:class:`~segzoo.models.layers.exportable.AdaptiveAvgPool2d`), so ONNX exports pool correctly at
every size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from segzoo.models.layers.aspp import check_pooled_batch
from segzoo.models.layers.conv import ConvNormAct
from segzoo.models.layers.exportable import AdaptiveAvgPool2d
from segzoo.models.layers.upsample import resize


class PyramidPooling(nn.Module):
    """(B, C, H, W) -> (B, C + len(bins) * channels, H, W).

    Args:
        in_channels: C.
        channels: width of each pooled branch (default C // len(bins), the paper's C / 4).
        bins: pooled grid sizes.
        norm: ``"bn"``, ``"syncbn"``, ``"gn"`` or ``None``.

    Raises (on forward):
        ValueError: BatchNorm in training mode with a batch of one: the 1x1 bin has one value per
            channel (use a batch >= 2, or ``norm="gn"``/``None``).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int | None = None,
        bins: Sequence[int] = (1, 2, 3, 6),
        *,
        norm: str | None = "bn",
    ) -> None:
        super().__init__()
        self.bins = tuple(int(b) for b in bins)
        if not self.bins or min(self.bins) < 1:
            raise ValueError(f"bins must be positive grid sizes, got {tuple(bins)}")
        channels = channels or max(1, in_channels // len(self.bins))
        self.out_channels = in_channels + len(self.bins) * channels
        self.stages = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool2d(b), ConvNormAct(in_channels, channels, 1, norm=norm))
            for b in self.bins
        )

    def forward(self, x: Tensor) -> Tensor:
        if 1 in self.bins:
            check_pooled_batch(self, x, "PSPNet pyramid pooling (bin 1)")
        size = x.shape[-2:]
        return torch.cat([x] + [resize(stage(x), size) for stage in self.stages], dim=1)
