"""Mirror padding for U-Net's overlap-tile strategy (Ronneberger et al. 2015, sec. 2, Fig. 2)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def mirror_pad(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Extend (B, C, H, W) by mirroring without repeating the edge pixel (``reflect``), repeatedly
    where the padding exceeds the image (``F.pad(mode="reflect")`` needs pad < size); a side of
    1 pixel is replicated.

    Returns:
        (B, C, H + top + bottom, W + left + right), same dtype and device.

    Raises:
        ValueError: a negative padding.
    """
    pads = [left, right, top, bottom]
    if min(pads) < 0:
        raise ValueError(f"negative padding {pads}")
    while any(pads):
        h, w = x.shape[-2:]
        limits = [w - 1, w - 1, h - 1, h - 1]
        step = [min(p, m) if m > 0 else 0 for p, m in zip(pads, limits)]
        if not any(step):  # 1-pixel sides cannot be reflected
            return F.pad(x, pads, mode="replicate")
        x = F.pad(x, step, mode="reflect")
        pads = [p - s for p, s in zip(pads, step)]
    return x
