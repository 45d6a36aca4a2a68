"""Convolution + normalisation + activation blocks, and the norm-layer factory.

``norm`` everywhere in the zoo is one of ``"bn"`` (BatchNorm2d), ``"syncbn"`` (SyncBatchNorm:
statistics over all processes of a distributed run; plain BatchNorm without one), ``"gn"``
(GroupNorm) or ``None`` (no normalisation).
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from segzoo.models.layers.depthwise_taps import DepthwiseConv2d

NormName = Literal["bn", "syncbn", "gn"]
NORMS = ("bn", "syncbn", "gn", None)


def build_norm(norm: str | None, channels: int) -> nn.Module:
    """A normalisation layer for ``channels`` feature maps.

    Args:
        norm: ``"bn"`` (BatchNorm2d), ``"syncbn"`` (SyncBatchNorm), ``"gn"`` (GroupNorm with 32
            groups, or the largest power of two below that divides ``channels`` and leaves at
            least 2 channels per group, so that a 1x1 pooled map can be normalised), or ``None``
            / ``"none"`` (identity).

    Raises:
        ValueError: unknown ``norm``.
    """
    if norm in (None, "none"):
        return nn.Identity()
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "syncbn":
        return nn.SyncBatchNorm(channels)
    if norm == "gn":
        groups = 32
        while groups > 1 and (channels % groups or channels // groups < 2):
            groups //= 2
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"unknown norm {norm!r}; use 'bn', 'syncbn', 'gn' or None")


def is_batch_norm(module: nn.Module) -> bool:
    """True for BatchNorm/SyncBatchNorm layers (which need > 1 value per channel in training)."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> ReLU, with "same" padding for odd kernels (dilation included).

    Input (B, in_channels, H, W) -> output (B, out_channels, H', W') with H' = ceil(H / stride)
    (``padding=0`` instead gives "valid" convolutions: H' = H - dilation * (kernel_size - 1)).
    The convolution has no bias when a norm layer follows it. Children are indexed 0 (conv),
    1 (norm), 2 (act), torchvision's layout, so its checkpoints map key for key. A depthwise
    convolution (``groups == in_channels == out_channels > 1``) is a :class:`DepthwiseConv2d`
    (an ``nn.Conv2d`` that :func:`~segzoo.models.layers.depthwise_taps.depthwise_as_taps` can
    rewrite under ``torch.compile``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        padding: int | None = None,
        norm: str | None = "bn",
        act: bool = True,
    ) -> None:
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        use_norm = norm not in (None, "none")
        conv_args = {"stride": stride, "padding": padding, "dilation": dilation, "bias": not use_norm}
        if groups == in_channels == out_channels > 1:
            conv = DepthwiseConv2d(in_channels, kernel_size, **conv_args)
        else:
            conv = nn.Conv2d(in_channels, out_channels, kernel_size, groups=groups, **conv_args)
        super().__init__(
            conv,
            build_norm(norm, out_channels),
            nn.ReLU(inplace=True) if act else nn.Identity(),
        )


class SeparableConvNormAct(nn.Sequential):
    """Depthwise separable convolution (DeepLab v3+, Chen et al. ECCV 2018, sec. 3.1).

    depthwise ``kernel_size`` conv (possibly atrous) -> norm -> ReLU -> pointwise 1x1 conv ->
    norm -> ReLU, as v3+'s ASPP and decoder use it ("batch normalization and ReLU after each
    3x3 depthwise convolution"). (B, in_channels, H, W) -> (B, out_channels, H, W) with
    "same" padding. Children: ``depthwise`` and ``pointwise`` (each a :class:`ConvNormAct`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        dilation: int = 1,
        norm: str | None = "bn",
    ) -> None:
        super().__init__()
        self.depthwise = ConvNormAct(in_channels, in_channels, kernel_size, dilation=dilation,
                                     groups=in_channels, norm=norm)
        self.pointwise = ConvNormAct(in_channels, out_channels, 1, norm=norm)


def conv_block(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    *,
    dilation: int = 1,
    separable: bool = False,
    norm: str | None = "bn",
) -> nn.Module:
    """A :class:`SeparableConvNormAct` if ``separable`` (and the kernel is > 1), else a
    :class:`ConvNormAct`; both keep the spatial size."""
    if separable and kernel_size > 1:
        return SeparableConvNormAct(in_channels, out_channels, kernel_size, dilation=dilation, norm=norm)
    return ConvNormAct(in_channels, out_channels, kernel_size, dilation=dilation, norm=norm)
