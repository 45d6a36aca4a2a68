"""The U-Net contracting path (Ronneberger, Fischer & Brox, MICCAI 2015, sec. 2, Fig. 1).

``depth`` + 1 levels of [3x3 conv, ReLU] x 2, with a 2x2 max-pool (stride 2) between levels;
channels double at every level: 64, 128, 256, 512, 1024 in the paper. ``padding="valid"`` uses
the paper's unpadded convolutions (each conv trims 2 pixels); ``"same"`` pads them.
The paper has no normalisation (it predates BatchNorm); ``norm="bn"`` adds it after every conv.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from segzoo.models.backbones.base import Backbone
from segzoo.models.layers import ConvNormAct
from segzoo.models.weights import load_state_dict, load_weights
from segzoo.registry import BACKBONES

Padding = Literal["valid", "same"]


class DoubleConv(nn.Sequential):
    """[3x3 conv -> norm -> ReLU] x 2. (B, C_in, H, W) -> (B, C_out, H - 4, W - 4) for "valid",
    (B, C_out, H, W) for "same"."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: str = "same",
                 norm: str | None = None) -> None:
        pad = 0 if padding == "valid" else 1
        super().__init__(
            ConvNormAct(in_channels, out_channels, 3, padding=pad, norm=norm),
            ConvNormAct(out_channels, out_channels, 3, padding=pad, norm=norm),
        )


class UNetEncoder(Backbone):
    """The contracting path; returns the output of every level (before its max-pool).

    Output: ``depth + 1`` maps with strides (1, 2, 4, 8, 16) and channels
    (64, 128, 256, 512, 1024) for the paper's ``depth=4``, ``base_channels=64``. With "valid"
    padding, level sizes shrink by 4 per level besides the pooling (572 -> 568, 280, 136, 64, 28).

    Args:
        base_channels: channels of the first level (64 in the paper).
        depth: number of max-pool steps (4 in the paper).
        padding: ``"valid"`` (paper) or ``"same"``.
        norm: ``None`` (paper), ``"bn"``, ``"syncbn"`` or ``"gn"``.
        weights: path or URL of a state dict of this encoder.

    Raises:
        ValueError: ``depth`` < 1, ``base_channels`` < 1, or an unknown ``padding``.
    """

    def __init__(self, *, base_channels: int = 64, depth: int = 4, padding: str = "same",
                 norm: str | None = None, weights: str | None = None) -> None:
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        if depth < 1 or base_channels < 1:
            raise ValueError(f"depth and base_channels must be >= 1, got {depth}, {base_channels}")
        chans = [base_channels * 2**i for i in range(depth + 1)]
        self.padding = padding
        self.depth = depth
        self.out_channels = tuple(chans)
        self.out_strides = tuple(2**i for i in range(depth + 1))
        self.levels = nn.ModuleList(
            DoubleConv(c_in, c_out, padding=padding, norm=norm)
            for c_in, c_out in zip([3, *chans[:-1]], chans)
        )
        self.pool = nn.MaxPool2d(2, 2)
        for m in self.modules():  # the paper's init: Gaussian, std sqrt(2 / N), N = k*k*C_in
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if weights is not None:
            load_weights(self, load_state_dict(weights), source=str(weights))

    def forward(self, images: Tensor) -> list[Tensor]:
        outs = []
        x = images
        for i, level in enumerate(self.levels):
            x = level(self.pool(x) if i else x)
            outs.append(x)
        return outs


@BACKBONES.register("unet_encoder", paper="Ronneberger et al., U-Net, MICCAI 2015")
def unet_encoder(*, weights: str | None = None, base_channels: int = 64, depth: int = 4,
                 padding: Padding = "same", norm: Literal["bn", "syncbn", "gn"] | None = None) -> UNetEncoder:
    """The original U-Net encoder (18.8M parameters at the paper's widths)."""
    return UNetEncoder(base_channels=base_channels, depth=depth, padding=padding, norm=norm,
                       weights=weights)
