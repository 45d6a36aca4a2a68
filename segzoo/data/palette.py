"""Class colour palettes for label PNGs and overlays."""

from __future__ import annotations


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC bit-interleaved palette: distinct colours for any number of classes."""
    palette = []
    for i in range(num_classes):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append((r, g, b))
    return palette
