"""Tiled inference: sliding windows with blended overlaps, and U-Net's overlap-tile strategy.

**Sliding window** (mmsegmentation's ``slide`` mode): windows of ``crop`` (H, W) every ``stride``
pixels; the last row/column of windows is shifted back inside the image, a window is the whole image
side where the image is smaller than the crop. Each pixel's logits are the mean over the windows
covering it (a count map divides the summed logits).

**Overlap-tile** (Ronneberger et al. 2015, sec. 2 and Fig. 2) for models with "valid" padding,
whose output is the centre of their input. Such a model exposes the *valid-padding protocol*:

* ``model.output_size(side: int) -> int | None``: the output side for an input side (None where
  the side is not a valid tile size), with equal margins ``(side - output) / 2`` on both sides;
* ``model.forward_valid(images) -> logits``: the raw network, (B, 3, T, T') ->
  (B, K, output_size(T), output_size(T')).

The image is extended by mirroring (reflection, repeated when the context is larger than the image)
so that border pixels get context too; output tiles of ``output_size(tile)`` are laid every
``stride`` pixels like sliding windows, each predicted from its input tile, overlaps averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from segzoo.models.layers.padding import mirror_pad


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets of windows of ``crop`` every ``stride`` along a side of ``size`` (mmseg's
    grid: the last window ends at the border; one window when ``crop >= size``)."""
    if crop <= 0 or stride <= 0:
        raise ValueError(f"crop and stride must be positive, got {crop}, {stride}")
    n = max(size - crop + stride - 1, 0) // stride + 1
    return sorted({max(min(i * stride + crop, size) - crop, 0) for i in range(n)})



def _run_windows(forward: Callable[[Tensor], Tensor], crops: list[Tensor], batch_size: int) -> list[Tensor]:
    outs: list[Tensor] = []
    for i in range(0, len(crops), batch_size):
        group = crops[i:i + batch_size]
        if all(c.shape == group[0].shape for c in group):
            outs.extend(forward(torch.cat(group)).split(1))
        else:  # windows clipped to a smaller image side differ in size
            outs.extend(forward(c) for c in group)
    return outs


def slide_logits(model: nn.Module, images: Tensor, crop: Sequence[int], stride: Sequence[int], *,
                 batch_size: int = 8) -> Tensor:
    """Sliding-window logits (see the module docstring).

    Args:
        model: eval-mode semantic model, (N, 3, h, w) -> (N, K, h, w).
        images: (B, 3, H, W).
        crop, stride: (H, W) window size and step.
        batch_size: windows per forward pass.

    Returns:
        (B, K, H, W) logits: per pixel the mean over the windows covering it.
    """
    b, _, h, w = images.shape
    ch, cw = int(crop[0]), int(crop[1])
    boxes = [(y, x, min(y + ch, h), min(x + cw, w))
             for y in window_starts(h, ch, int(stride[0])) for x in window_starts(w, cw, int(stride[1]))]
    crops = [images[i:i + 1, :, y1:y2, x1:x2] for i in range(b) for (y1, x1, y2, x2) in boxes]
    outs = _run_windows(model, crops, batch_size)
    k = outs[0].shape[1]
    total = images.new_zeros(b, k, h, w)
    count = images.new_zeros(1, 1, h, w)
    for y1, x1, y2, x2 in boxes:
        count[..., y1:y2, x1:x2] += 1
    for j, out in enumerate(outs):
        i, r = divmod(j, len(boxes))
        y1, x1, y2, x2 = boxes[r]
        if out.shape[-2:] != (y2 - y1, x2 - x1):
            raise ValueError(f"the model returned {tuple(out.shape[-2:])} logits for a "
                             f"{(y2 - y1, x2 - x1)} window; slide mode needs logits at input size")
        total[i, :, y1:y2, x1:x2] += out[0]
    return total / count


def is_valid_padding(model: nn.Module) -> bool:
    """Whether ``model`` follows the valid-padding protocol and shrinks its input."""
    out = getattr(model, "output_size", None)
    if not (callable(out) and callable(getattr(model, "forward_valid", None))):
        return False
    probe = next((s for s in range(16, 1025) if out(s) is not None), None)
    return probe is not None and out(probe) != probe


def valid_tile_geometry(model: nn.Module, tile: int) -> tuple[int, int]:
    """(output side, margin) of a valid-padding model for an input tile side.

    Raises:
        ValueError: ``tile`` is not a valid input side (the message lists the nearest valid ones)
            or the margins are unequal.
    """
    out = model.output_size(tile)
    if out is None:
        near = [s for s in range(max(1, tile - 64), tile + 65) if model.output_size(s) is not None]
        close = sorted(near, key=lambda s: abs(s - tile))[:4]
        raise ValueError(f"eval.crop_size side {tile} is not a valid input tile for this valid-padding "
                         f"model; nearest valid sides: {sorted(close)}")
    if (tile - out) % 2:
        raise ValueError(f"tile {tile} -> output {out}: margins must be equal on both sides")
    return out, (tile - out) // 2


def overlap_tile_logits(model: nn.Module, images: Tensor, tile: Sequence[int],
                        stride: Sequence[int] | None = None, *, batch_size: int = 8) -> Tensor:
    """Overlap-tile logits of a valid-padding model (see the module docstring).

    Args:
        model: eval-mode model with ``output_size`` and ``forward_valid``.
        images: (B, 3, H, W).
        tile: (H, W) input tile size (each side must be valid for the model).
        stride: (H, W) step between output tiles (default: the output tile, no overlap); at most
            the output tile.
        batch_size: tiles per forward pass.

    Returns:
        (B, K, H, W) logits.
    """
    b, _, h, w = images.shape
    (oh, mh), (ow, mw) = valid_tile_geometry(model, int(tile[0])), valid_tile_geometry(model, int(tile[1]))
    sh, sw = (oh, ow) if stride is None else (int(stride[0]), int(stride[1]))
    if sh > oh or sw > ow:
        raise ValueError(f"stride {(sh, sw)} leaves gaps between output tiles of {(oh, ow)}")
    hc, wc = max(h, oh), max(w, ow)  # the output canvas: at least one tile
    padded = mirror_pad(images, mh, mh + hc - h, mw, mw + wc - w)
    starts = [(y, x) for y in window_starts(hc, oh, sh) for x in window_starts(wc, ow, sw)]
    crops = [padded[i:i + 1, :, y:y + oh + 2 * mh, x:x + ow + 2 * mw] for i in range(b) for y, x in starts]
    outs = _run_windows(model.forward_valid, crops, batch_size)
    total = images.new_zeros(b, outs[0].shape[1], hc, wc)
    count = images.new_zeros(1, 1, hc, wc)
    for y, x in starts:
        count[..., y:y + oh, x:x + ow] += 1
    for j, out in enumerate(outs):
        y, x = starts[j % len(starts)]
        total[j // len(starts), :, y:y + oh, x:x + ow] += out[0]
    return (total / count)[..., :h, :w]
