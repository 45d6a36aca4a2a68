"""Atrous Spatial Pyramid Pooling with image pooling (DeepLab v3, Chen et al. 2017, sec. 3.3).

Used by DeepLab v3 and v3+ (with depthwise separable atrous branches, v3+ sec. 3.1). DeepLab v2's
ASPP, whose branches predict class scores that are summed, is a head of its own
(:mod:`segzoo.models.heads.aspp_v2_head`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from segzoo.models.layers.conv import ConvNormAct, conv_block, is_batch_norm


def check_pooled_batch(module: nn.Module, images_or_features: Tensor, what: str) -> None:
    """Raise a clear ``ValueError`` where a BatchNorm would see one value per channel.

    A globally pooled 1x1 map of a batch of one has a single value per channel, which BatchNorm
    cannot normalise in training mode (torch raises "Expected more than 1 value per channel").
    GroupNorm or no norm work at any batch size; eval mode uses running statistics.
    """
    if not module.training or images_or_features.shape[0] > 1:
        return
    if any(is_batch_norm(m) for m in module.modules()):
        raise ValueError(
            f"{what}: BatchNorm after global pooling needs a batch of at least 2 images in "
            f"training mode (got 1); use batch_size >= 2, or norm='gn' / norm=None for the head"
        )


class ImagePooling(nn.Sequential):
    """Image-level features: global average pool -> 1x1 conv -> norm -> ReLU -> broadcast.

    (B, in_channels, H, W) -> (B, out_channels, H, W). Children: 0 (pool), 1 (ConvNormAct).

    Raises (on forward):
        ValueError: BatchNorm in training mode with a batch of one (see
            :func:`check_pooled_batch`).
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm: str | None = "bn") -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), ConvNormAct(in_channels, out_channels, 1, norm=norm))

    def forward(self, x: Tensor) -> Tensor:
        check_pooled_batch(self, x, "ASPP image pooling")
        return super().forward(x).expand(-1, -1, *x.shape[-2:])


class ASPP(nn.Module):
    """ASPP: a 1x1 conv, one 3x3 atrous conv per rate and image pooling, each ``channels`` wide
    with norm + ReLU, concatenated and projected by a 1x1 conv + norm + ReLU (+ dropout).

    Args:
        in_channels: channels of the input features.
        channels: width of every branch and of the output (256 in the paper).
        atrous_rates: dilation of each 3x3 branch ((6, 12, 18) at output stride 16; doubled at 8).
        image_pooling: include the image-level branch (paper: yes).
        separable: depthwise separable atrous branches (v3+ sec. 3.1).
        norm: ``"bn"``, ``"syncbn"``, ``"gn"`` or ``None``.
        dropout: after the projection (torchvision 0.5; the TF reference keeps 0.9, i.e. 0.1).

    Shapes: (B, in_channels, H, W) -> (B, channels, H, W).

    Module layout follows torchvision's ``ASPP``: ``convs`` (1x1 + atrous branches),
    ``image_pool``, ``project`` (``project.0`` the ConvNormAct, ``project.1`` the dropout).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 256,
        atrous_rates: Sequence[int] = (6, 12, 18),
        *,
        image_pooling: bool = True,
        separable: bool = False,
        norm: str | None = "bn",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if any(int(r) < 1 for r in atrous_rates):
            raise ValueError(f"atrous_rates must be positive, got {tuple(atrous_rates)}")
        self.atrous_rates = tuple(int(r) for r in atrous_rates)
        branches = [ConvNormAct(in_channels, channels, 1, norm=norm)]
        branches += [conv_block(in_channels, channels, 3, dilation=r, separable=separable, norm=norm)
                     for r in self.atrous_rates]
        self.convs = nn.ModuleList(branches)
        self.image_pool = ImagePooling(in_channels, channels, norm=norm) if image_pooling else None
        n = len(branches) + int(image_pooling)
        self.project = nn.Sequential(ConvNormAct(n * channels, channels, 1, norm=norm), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        outs = [branch(x) for branch in self.convs]
        if self.image_pool is not None:
            outs.append(self.image_pool(x))
        return self.project(torch.cat(outs, dim=1))


def scaled_rates(output_stride: int, base: Sequence[int] = (6, 12, 18), base_stride: int = 16) -> tuple[int, ...]:
    """ASPP rates for ``output_stride``: the paper's (6, 12, 18) at OS 16, doubled at OS 8
    (DeepLab v3 sec. 4.1), halved at OS 32 (rounded, at least 1)."""
    return tuple(max(1, round(r * base_stride / output_stride)) for r in base)
