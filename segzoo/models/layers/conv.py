"""Convolution + normalisation + activation blocks."""

from __future__ import annotations

from torch import nn


def build_norm(norm: str | None, channels: int) -> nn.Module:
    """A normalisation layer for ``channels`` feature maps.

    Args:
        norm: ``"bn"`` (BatchNorm2d), ``"gn"`` (GroupNorm, 32 groups or fewer when ``channels`` is
            small), or ``None`` / ``"none"`` (identity).

    Raises:
        ValueError: unknown ``norm``.
    """
    if norm in (None, "none"):
        return nn.Identity()
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "gn":
        groups = 32
        while channels % groups:
            groups //= 2
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"unknown norm {norm!r}; use 'bn', 'gn' or None")


class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> ReLU, with "same" padding for odd kernels (dilation included).

    Input (B, in_channels, H, W) -> output (B, out_channels, H', W') with H' = ceil(H / stride).
    The convolution has no bias when a norm layer follows it.
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
        norm: str | None = "bn",
        act: bool = True,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        use_norm = norm not in (None, "none")
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=not use_norm,
            ),
            build_norm(norm, out_channels),
            nn.ReLU(inplace=True) if act else nn.Identity(),
        )
