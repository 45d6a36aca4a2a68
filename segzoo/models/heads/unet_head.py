"""U-Net expansive path (Ronneberger et al., MICCAI 2015, sec. 2), also over any encoder.

Each block: 2x upsampling, concatenation with the encoder feature of the same stride (centre
cropped to the upsampled size with "valid" padding, the upsampled map zero-padded at the
bottom/right to an odd skip size with "same"), then [3x3 conv, norm, ReLU] x 2. The paper's
upsampling is a learned 2x2 up-convolution halving the channels (``upsampling="transposed"``);
smp's U-Net over a ResNet/timm encoder uses nearest-neighbour upsampling and blocks without a skip
below the encoder's finest stride (``decoder_channels`` longer than the number of skips).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from segzoo.models.heads.wiring import FeatureInfo, as_tuple, incompatible
from segzoo.models.layers import ConvNormAct, NormName, resize
from segzoo.models.layers.exportable import pad_to
from segzoo.registry import HEADS


def center_crop(x: Tensor, size: Sequence[int]) -> Tensor:
    """The centre (H', W') = ``size`` of (B, C, H, W) features (H' <= H, W' <= W)."""
    h, w = x.shape[-2:]
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return x[..., top:top + size[0], left:left + size[1]]


class UpBlock(nn.Module):
    """2x upsampling + skip concatenation + two 3x3 conv-norm-ReLU.

    (B, in_channels, h, w) and skip (B, skip_channels, H, W) -> (B, out_channels, H', W') with
    H' = H ("same") or 2h - 4 ("valid"); without a skip, H' = 2h (- 4).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *,
                 upsampling: str = "transposed", padding: str = "same", norm: str | None = None) -> None:
        super().__init__()
        if upsampling not in ("transposed", "bilinear", "nearest"):
            raise ValueError(f"upsampling must be 'transposed', 'bilinear' or 'nearest', got {upsampling!r}")
        self.upsampling = upsampling
        self.padding = padding
        if upsampling == "transposed":  # the paper's "2x2 up-convolution that halves the channels"
            self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
            in_channels = out_channels
        pad = 0 if padding == "valid" else 1
        self.conv1 = ConvNormAct(in_channels + skip_channels, out_channels, 3, padding=pad, norm=norm)
        self.conv2 = ConvNormAct(out_channels, out_channels, 3, padding=pad, norm=norm)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        h, w = x.shape[-2:]
        target = (2 * h, 2 * w)
        if skip is not None and self.padding == "same":
            target = tuple(skip.shape[-2:])
        if self.upsampling == "transposed":
            x = pad_to(self.up(x), target)  # zero rows/columns at the bottom/right (no-op if equal)
        else:
            x = resize(x, target, mode=self.upsampling)
        if skip is not None:
            if self.padding == "valid":
                skip = center_crop(skip, x.shape[-2:])
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetHead(nn.Module):
    """The decoder: one :class:`UpBlock` per skip, deepest first, then optional blocks without a
    skip, then a 1x1 conv -> K.

    Args:
        in_channels: encoder channels by increasing stride (the last one is the bottom).
        in_strides: their strides.
        num_classes: K.
        decoder_channels: output width of each block, deepest first; at least one per skip
            (``len(in_channels) - 1``); each extra one adds a block without a skip (x2 each).
            Default: the encoder's own widths (the paper: 512, 256, 128, 64).
        upsampling: ``"transposed"`` (paper), ``"bilinear"`` or ``"nearest"``.
        padding: ``"valid"`` (paper) or ``"same"``.
        norm: ``None`` (paper), ``"bn"``, ``"syncbn"`` or ``"gn"``.

    Shapes: the encoder's features -> logits (B, K, h, w) at stride
    ``in_strides[0] / 2**extra_blocks`` ("same"; smaller with "valid").

    Raises:
        ValueError: fewer ``decoder_channels`` than skips, or so many that the output stride
            would fall below 1.
    """

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], num_classes: int, *,
                 decoder_channels: Sequence[int] | None = None, upsampling: str = "transposed",
                 padding: str = "same", norm: str | None = None) -> None:
        super().__init__()
        skips = list(in_channels[:-1])[::-1]
        if decoder_channels is None:
            decoder_channels = skips
        decoder_channels = tuple(int(c) for c in decoder_channels)
        extra = len(decoder_channels) - len(skips)
        if extra < 0:
            raise ValueError(f"decoder_channels needs one width per skip ({len(skips)}), got "
                             f"{decoder_channels}")
        if in_strides[0] < 2**extra:
            raise ValueError(f"{extra} decoder block(s) without a skip would go below stride 1 "
                             f"(finest encoder stride {in_strides[0]}); give {len(skips)} or "
                             f"{len(skips) + (in_strides[0].bit_length() - 1)} decoder_channels")
        self.output_stride = in_strides[0] // 2**extra
        self.padding = padding
        chans = [in_channels[-1], *decoder_channels]
        self.blocks = nn.ModuleList(
            UpBlock(chans[i], skips[i] if i < len(skips) else 0, chans[i + 1],
                    upsampling=upsampling, padding=padding, norm=norm)
            for i in range(len(decoder_channels))
        )
        self.conv_seg = nn.Conv2d(chans[-1], num_classes, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        x = features[-1]
        skips = features[:-1][::-1]
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        return self.conv_seg(x)


def default_decoder_channels(features: FeatureInfo) -> tuple[int, ...]:
    """smp's U-Net widths (256, 128, 64, 32, 16, ...): one block per skip, then blocks without a
    skip down to stride 1."""
    extra = features.strides[0].bit_length() - 1  # blocks below the finest stride
    return tuple(256 // 2**i for i in range(len(features) - 1 + extra))


@HEADS.register("unet_head", paper="Ronneberger et al., U-Net, MICCAI 2015",
                reads="every feature (one skip per stage); the finest at stride 2 or 4")
def unet_head(features: FeatureInfo, num_classes: int, /, *,
              decoder_channels: tuple[int, ...] | None = None,
              upsampling: Literal["transposed", "bilinear", "nearest"] = "nearest",
              padding: Literal["valid", "same"] = "same",
              norm: NormName | None = "bn") -> UNetHead:
    """The U-Net decoder over any encoder (smp's layout by default: nearest upsampling, BN,
    :func:`default_decoder_channels`); ``upsampling: transposed`` and ``norm: null`` give the
    paper's blocks. ``padding: valid`` needs the original encoder with valid padding (the
    ``unet`` model). Options as :class:`UNetHead`.

    Raises:
        ValueError: a backbone whose finest feature is coarser than stride 4 (nothing to take
            the skips from), or fewer ``decoder_channels`` than skips.
    """
    if len(features) < 2 or features.strides[0] > 4:
        raise incompatible("unet_head", features, "a U-Net decoder needs skips down to stride 2 "
                           "or 4", "use a backbone whose finest feature is at stride 1, 2 or 4 "
                           "(with every stage down to it)")
    if decoder_channels is None:
        decoder_channels = default_decoder_channels(features)
    return UNetHead(features.channels, features.strides, num_classes,
                    decoder_channels=as_tuple(decoder_channels), upsampling=upsampling,
                    padding=padding, norm=norm)
