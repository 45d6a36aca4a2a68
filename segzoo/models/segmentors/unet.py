"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015), original and over any encoder.

Original (``backbone="unet_encoder"``): 64..1024 channels, [3x3 conv, ReLU] x 2 per level, 2x2
max-pool, 2x2 up-convolutions halving channels, skip concatenation, 1x1 -> K; 31.0M parameters.
``padding="valid"`` is the paper's geometry: a 572x572 tile gives 388x388 logits (its centre),
see :meth:`UNet.output_size` / :meth:`UNet.valid_input_sizes`. ``padding="same"`` keeps the size.

Encoder-swappable (any other backbone, smp's U-Net): decoder blocks of (256, 128, 64, 32, 16)
channels with nearest upsampling and BN, the last one(s) without a skip, up to stride 1.

Forward contract: like every semantic model, logits at the input size. With "valid" padding the
input is mirror-extended by the missing context first (the paper's border strategy, sec. 2 and
Fig. 2, applied to one tile) and the output cropped; :meth:`UNet.forward_valid` is the raw
network (tile in, smaller centre out). Overlap-tile inference of large images lives with
evaluation.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from segzoo.models.heads.unet_head import UNetHead
from segzoo.models.layers.padding import mirror_pad
from segzoo.models.segmentors._build import make_backbone
from segzoo.models.segmentors.encoder_decoder import EncoderDecoder
from segzoo.registry import MODELS

_PAPER = "Ronneberger et al., U-Net: Convolutional Networks for Biomedical Image Segmentation, MICCAI 2015"


def valid_output_size(size: int, depth: int = 4) -> int | None:
    """Output side of a valid-padded U-Net of ``depth`` pooling steps for an input side ``size``,
    or ``None`` where the tile does not fit (a max-pool on an odd size, or nothing left).

    Each level trims 4 pixels (two unpadded 3x3 convs) on the way down and up (572 -> 388)."""
    s = size - 4
    for _ in range(depth):
        if s <= 0 or s % 2:
            return None
        s = s // 2 - 4
    if s <= 0:
        return None
    for _ in range(depth):
        s = 2 * s - 4
        if s <= 0:
            return None
    return s



class UNet(EncoderDecoder):
    """U-Net segmentor: :class:`EncoderDecoder` plus the valid-padding geometry.

    Args:
        backbone, decode_head, num_classes, name: as :class:`EncoderDecoder`.
        padding: ``"valid"`` or ``"same"``.

    Raises (on forward):
        ValueError: not (B, 3, H, W) floats, or H or W below ``min_input_size`` (2**depth).
    """

    def __init__(self, backbone, decode_head, *, num_classes: int, padding: str = "same",
                 name: str = "unet") -> None:
        super().__init__(backbone, decode_head, num_classes=num_classes, name=name)
        self.padding = padding
        self.depth = len(backbone.out_strides) - 1

    @property
    def min_input_size(self) -> int:
        """Smallest H and W accepted (the bottom level is at least 1x1)."""
        return max(self.backbone.out_strides)

    def output_size(self, size: int) -> int | None:
        """Logit side of the raw network for an input side: ``size`` with "same" padding, the
        valid geometry otherwise (572 -> 388; ``None`` for a tile side that does not fit)."""
        if self.padding == "same":
            return size if size >= self.min_input_size else None
        return valid_output_size(size, self.depth)

    def valid_input_sizes(self, max_size: int = 1024) -> list[int]:
        """Input sides <= ``max_size`` that the raw "valid" network takes exactly (188, 204, ...,
        572, ... for depth 4: steps of 2**depth)."""
        return [s for s in range(1, max_size + 1) if self.output_size(s) is not None]

    def input_size_for(self, size: int) -> int:
        """The smallest valid tile side whose output covers ``size`` pixels."""
        if self.padding == "same":
            return max(size, self.min_input_size)
        s = 1
        while (o := self.output_size(s)) is None or o < size:
            s += 1
        return s

    def forward_valid(self, images: Tensor) -> Tensor:
        """The raw network: (B, 3, T, T') -> logits (B, K, output_size(T), output_size(T'))
        (the centre of the tile with "valid" padding).

        Raises:
            ValueError: a tile side the valid network does not take; the message lists the
                nearest that do.
        """
        self.check_input(images)
        for side in images.shape[-2:]:
            if self.output_size(side) is None:
                raise ValueError(self._geometry_error(side))
        return self.decode_head(self.backbone(images))

    def _geometry_error(self, side: int) -> str:
        sizes = self.valid_input_sizes(max(2 * side, 1024))
        lower = [s for s in sizes if s < side][-2:]
        upper = [s for s in sizes if s > side][:2]
        first = sizes[0] if sizes else None
        step = sizes[1] - sizes[0] if len(sizes) > 1 else None
        return (f"{self.name} with valid padding takes tile sides {first} + {step}k "
                f"(e.g. 572 -> {self.output_size(572)}); got {side}; nearest: "
                f"{', '.join(map(str, lower + upper))}. Use model(images) for any size (mirrored "
                f"context) or padding='same'")

    def forward(self, images: Tensor) -> Tensor | dict[str, Tensor]:
        if self.padding == "same":
            return super().forward(images)
        self.check_input(images)
        h, w = images.shape[-2:]
        th, tw = self.input_size_for(h), self.input_size_for(w)
        mh, mw = (th - self.output_size(th)) // 2, (tw - self.output_size(tw)) // 2
        tile = mirror_pad(images, mh, th - h - mh, mw, tw - w - mw)
        logits = self.decode_head(self.backbone(tile))[..., :h, :w]
        return logits if not self.training else {"out": logits}


@MODELS.register("unet", task="semantic", paper=_PAPER)
def unet(
    *,
    num_classes: int = 2,
    backbone: str = "unet_encoder",
    weights_backbone: str | None = None,
    padding: Literal["valid", "same"] = "same",
    base_channels: int = 64,
    depth: int = 4,
    decoder_channels: tuple[int, ...] | None = None,
    upsampling: Literal["transposed", "bilinear", "nearest"] | None = None,
    norm: Literal["auto", "bn", "syncbn", "gn", "none"] | None = "auto",
) -> UNet:
    """U-Net.

    Args:
        num_classes: K (2 in the paper's cell-segmentation tasks).
        backbone: ``"unet_encoder"`` for the original, or any registered backbone (``resnet34``,
            ``mobilenet_v2``, ``tu-<timm name>``) for the smp-style encoder-swappable U-Net.
        weights_backbone: path or URL of encoder weights.
        padding: ``"valid"`` (paper: 572 -> 388; original encoder only) or ``"same"``.
        base_channels: first-level width of the original encoder (64).
        depth: pooling steps of the original encoder (4).
        decoder_channels: block widths, deepest first; default the mirror of the original
            encoder (512, 256, 128, 64), or (256, 128, 64, 32, 16) over other encoders.
        upsampling: ``"transposed"`` (paper's 2x2 up-conv), ``"bilinear"`` or ``"nearest"``;
            default transposed for the original, nearest (smp) otherwise.
        norm: ``"auto"``: none for the original (the paper), BN in the decoder otherwise;
            or ``"bn"``, ``"syncbn"``, ``"gn"``, ``"none"``/``None``.

    Returns:
        A :class:`UNet`: images (B, 3, H, W), H, W >= 2**depth (original) or the encoder's
        largest stride -> logits (B, K, H, W).

    Raises:
        ValueError: "valid" padding or original-encoder options with another encoder.
    """
    original = backbone == "unet_encoder"
    if norm == "auto":
        norm = None if original else "bn"
    if norm == "none":
        norm = None
    if original:
        encoder = make_backbone(backbone, model="unet", weights=weights_backbone,
                                base_channels=base_channels, depth=depth, padding=padding, norm=norm)
        upsampling = upsampling or "transposed"
    else:
        if padding != "same" or base_channels != 64 or depth != 4:
            raise ValueError("unet: padding='valid', base_channels and depth are options of the "
                             f"original encoder (backbone='unet_encoder'), not of {backbone!r}")
        encoder = make_backbone(backbone, model="unet", weights=weights_backbone)
        upsampling = upsampling or "nearest"
        if decoder_channels is None:
            extra = encoder.out_strides[0].bit_length() - 1  # blocks below the finest stride
            n = len(encoder.out_channels) - 1 + extra
            decoder_channels = tuple(256 // 2**i for i in range(n))
    head = UNetHead(encoder.out_channels, encoder.out_strides, num_classes,
                    decoder_channels=decoder_channels, upsampling=upsampling, padding=padding,
                    norm=norm)
    return UNet(encoder, head, num_classes=num_classes, padding=padding)
