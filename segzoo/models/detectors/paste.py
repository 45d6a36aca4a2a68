"""Pasting Mask R-CNN's RoI masks into the image, every mask at once.

torchvision's :func:`~torchvision.models.detection.roi_heads.paste_masks_in_image` pastes one mask
at a time in Python, reading each box's corners back to the host (a dozen GPU synchronisations per
detection: 100 detections at batch 1 cost more than the whole backbone on a GPU). :func:`paste_masks`
computes the same thing for all masks with a few tensor operations and no host read-back: the
mask padded by one pixel, its box enlarged to match and truncated to whole pixels (torchvision's
``expand_masks``/``expand_boxes``), bilinear resizing to the box size (``align_corners=False``,
the index and weight formulas of PyTorch's ``upsample_bilinear2d``), written at the box's place in
a zero image. Results agree with torchvision's to float rounding (within 1e-5; the order of a
multiply-add may differ), checked in ``tests/models/test_mask_paste.py``.

On the GPU this replaces torchvision's loop (:class:`~segzoo.models.detectors.transform.RCNNTransform`,
``mask_paste="auto"``); on the CPU, where a whole-image pass per mask costs more than the loop's
small resizes, the loop stays.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], *, padding: int = 1,
                chunk_pixels: int = 1 << 25) -> Tensor:
    """RoI masks pasted into an image of ``image_size``, all masks at once.

    Args:
        masks: (N, 1, M, M) float mask probabilities in 0..1 (Mask R-CNN's mask head after sigmoid).
        boxes: (N, 4) float boxes (x1, y1, x2, y2) in pixels of the target image.
        image_size: (H, W) of the target image.
        padding: pixels of zeros around each mask before resizing (torchvision's default 1).
        chunk_pixels: at most this many output pixels (masks x H x W) per pass; bounds the
            temporaries to a few times ``4 x chunk_pixels`` bytes (128 MiB by default).

    Returns:
        (N, 1, H, W) tensor of ``masks``' dtype and device: each mask resized bilinearly to its
        (padded, whole-pixel) box and zero outside it, as torchvision's ``paste_masks_in_image``.

    Raises:
        ValueError: ``masks`` not (N, 1, M, M) or ``boxes`` not (N, 4).
    """
    if masks.dim() != 4 or masks.shape[1] != 1 or masks.shape[-1] != masks.shape[-2]:
        raise ValueError(f"masks must be (N, 1, M, M), got {tuple(masks.shape)}")
    if boxes.dim() != 2 or boxes.shape != (masks.shape[0], 4):
        raise ValueError(f"boxes must be ({masks.shape[0]}, 4) for {masks.shape[0]} masks, got {tuple(boxes.shape)}")
    h, w = int(image_size[0]), int(image_size[1])
    out = masks.new_zeros((masks.shape[0], 1, h, w))
    if masks.shape[0] == 0 or h == 0 or w == 0:
        return out
    padded, scale = expand_masks(masks, padding=padding)
    boxes = expand_boxes(boxes, scale).to(torch.int64)
    step = max(1, chunk_pixels // (h * w))
    for i in range(0, masks.shape[0], step):
        out[i:i + step, 0] = _paste_chunk(padded[i:i + step, 0], boxes[i:i + step], h, w)
    return out


def _axis(start: Tensor, end: Tensor, size_out: int, size_in: int) -> tuple[Tensor, ...]:
    """Bilinear sampling along one image axis for n boxes spanning ``start..end`` (inclusive, int64
    (n,)): for every image coordinate (n, size_out) the two source indices into a ``size_in`` mask
    row, their weights, and whether the coordinate lies inside both the box and the image."""
    pos = torch.arange(size_out, device=start.device)
    length = (end - start + 1).clamp(min=1)
    # upsample_bilinear2d, align_corners=False: scale = in / out in float32, then
    # src = scale * (dst + 0.5) - 0.5, clamped at 0; index floor(src), weight src - index
    scale = size_in / length.to(torch.float32)
    local = (pos[None, :] - start[:, None]).to(torch.float32)
    src = (scale[:, None] * (local + 0.5) - 0.5).clamp(min=0)
    i0 = src.floor().to(torch.int64).clamp(max=size_in - 1)
    lam = (src - i0).clamp(0, 1)
    i1 = torch.where(i0 < size_in - 1, i0 + 1, i0)
    inside = (pos[None, :] >= start.clamp(min=0)[:, None]) & (pos[None, :] < (end + 1)[:, None])
    return i0, i1, 1 - lam, lam, inside


def _paste_chunk(masks: Tensor, boxes: Tensor, h: int, w: int) -> Tensor:
    """(n, S, S) padded masks + (n, 4) int64 boxes -> (n, h, w) pasted masks."""
    n, s = masks.shape[0], masks.shape[-1]
    x0, y0, x1, y1 = boxes.unbind(1)
    xi0, xi1, xw0, xw1, x_in = _axis(x0, x1, w, s)
    yi0, yi1, yw0, yw1, y_in = _axis(y0, y1, h, s)
    # along x: every mask row resampled at the image's columns, (n, S, w)
    rows = (masks.gather(2, xi0[:, None, :].expand(n, s, w)) * xw0[:, None, :]
            + masks.gather(2, xi1[:, None, :].expand(n, s, w)) * xw1[:, None, :])
    # along y: those rows resampled at the image's rows, (n, h, w)
    pasted = (rows.gather(1, yi0[:, :, None].expand(n, h, w)) * yw0[:, :, None]
              + rows.gather(1, yi1[:, :, None].expand(n, h, w)) * yw1[:, :, None])
    return torch.where(y_in[:, :, None] & x_in[:, None, :], pasted, pasted.new_zeros(()))
