"""The U-Net segmentor (Ronneberger, Fischer & Brox, MICCAI 2015): an :class:`EncoderDecoder`
with the paper's "valid"-padding geometry (572x572 tile -> 388x388 logits, its centre) and the
mirrored-context forward pass that keeps the common contract (logits at the input size).
"""

from __future__ import annotations

from torch import Tensor

from segzoo.models.layers.exportable import mirror_pad, valid_unet_tile
from segzoo.models.segmentors.encoder_decoder import EncoderDecoder


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
        backbone, decode_head, num_classes, neck, auxiliary_head, aux_loss_weight, name: as
            :class:`EncoderDecoder` (``"valid"`` padding takes neither neck nor auxiliary head).
        padding: ``"valid"`` or ``"same"``.

    Raises (on forward):
        ValueError: not (B, 3, H, W) floats, or H or W below ``min_input_size`` (2**depth).
    """

    def __init__(self, backbone, decode_head, *, num_classes: int, padding: str = "same",
                 name: str = "unet", **parts) -> None:
        super().__init__(backbone, decode_head, num_classes=num_classes, name=name, **parts)
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
        # the tile of input_size_for and its context margin, in closed form (exportable)
        (th, mh), (tw, mw) = valid_unet_tile(h, self.depth), valid_unet_tile(w, self.depth)
        tile = mirror_pad(images, mh, th - h - mh, mw, tw - w - mw)
        logits = self.decode_head(self.backbone(tile))[..., :h, :w]
        return logits if not self.training else {"out": logits}
