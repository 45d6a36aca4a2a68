"""Colouring label maps: palette PNGs, overlays and side-by-side panels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IGNORE_COLOR = (255, 255, 255)


def colorize(labels: torch.Tensor | np.ndarray, palette: Sequence[Sequence[int]],
             ignore_index: int = 255) -> np.ndarray:
    """Label map (H, W) of class indices -> RGB uint8 (H, W, 3); ``ignore_index`` is white."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64)
    lut = np.zeros((max(256, ignore_index + 1, len(palette)), 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    if ignore_index >= 0:
        lut[ignore_index] = IGNORE_COLOR
    return lut[labels.clip(0, len(lut) - 1)]


def overlay(image: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
            palette: Sequence[Sequence[int]], alpha: float = 0.5, ignore_index: int = 255) -> np.ndarray:
    """Blend coloured labels over an image: image (3, H, W) or (H, W, 3) uint8 -> (H, W, 3) uint8."""
    img = np.asarray(image.cpu() if isinstance(image, torch.Tensor) else image)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    color = colorize(labels, palette, ignore_index).astype(np.float32)
    return (img.astype(np.float32) * (1 - alpha) + color * alpha).round().astype(np.uint8)


def panel(image: torch.Tensor | np.ndarray, gt: torch.Tensor | None, pred: torch.Tensor,
          palette: Sequence[Sequence[int]], ignore_index: int = 255) -> np.ndarray:
    """[image | ground-truth overlay | prediction overlay] side by side, (H, 3W, 3) uint8."""
    img = np.asarray(image.cpu() if isinstance(image, torch.Tensor) else image)
    if img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    parts = [img]
    if gt is not None:
        parts.append(overlay(img, gt, palette, ignore_index=ignore_index))
    parts.append(overlay(img, pred, palette, ignore_index=ignore_index))
    return np.concatenate(parts, axis=1)


def save_rgb(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an (H, W, 3) uint8 array as PNG (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def save_label_png(labels: torch.Tensor | np.ndarray, palette: Sequence[Sequence[int]],
                   path: str | os.PathLike) -> Path:
    """Write class indices (H, W) as a palette ('P') PNG: pixel values are the class indices,
    viewers show the palette colours (the format of VOC/CamVid label files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.uint8)
    im = Image.fromarray(arr)  # mode "L"; putpalette turns it into "P" keeping the indices
    flat = [int(v) for c in palette for v in c][:768]
    im.putpalette(flat + [255] * (768 - len(flat)))
    im.save(path)
    return path


def instance_colors(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct, saturated colours (golden-ratio hues), one per instance."""
    import colorsys

    return [tuple(int(255 * v) for v in colorsys.hsv_to_rgb((0.1 + i * 0.618034) % 1.0, 0.85, 0.95))
            for i in range(n)]


def draw_instances(image: torch.Tensor, prediction: dict, class_names: Sequence[str], *,
                   score_threshold: float = 0.5, mask_threshold: float = 0.5, alpha: float = 0.5,
                   skeleton: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Overlay of instance detections: each instance's mask in its own colour, its box in the same
    colour and a ``"<class name> <score>"`` caption (torchvision's ``draw_segmentation_masks`` and
    ``draw_bounding_boxes``), and with ``keypoints`` each instance's points joined by
    ``skeleton`` (``draw_keypoints``); detections below ``score_threshold`` are left out.

    Args:
        image: (3, H, W) uint8.
        prediction: ``{"boxes" (N, 4) XYXY, "labels" (N,), "scores" (N,), "masks" (N, 1, H, W)
            probabilities or (N, H, W) bool, optional "keypoints" (N, K, 3) [x, y, v]}`` at the
            image's size.
        class_names: name of each label (label i -> ``class_names[i]``).
        skeleton: pairs of keypoint indices to join (the dataset's ``skeleton``); None: points only.

    Returns:
        (H, W, 3) uint8.
    """
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    from segzoo.metrics.instance import binary_masks

    img = torch.as_tensor(image).cpu()
    keep = torch.as_tensor(prediction["scores"]).cpu() >= score_threshold
    boxes = torch.as_tensor(prediction["boxes"]).cpu().float()[keep]
    labels = torch.as_tensor(prediction["labels"]).cpu()[keep].tolist()
    scores = torch.as_tensor(prediction["scores"]).cpu()[keep].tolist()
    if not labels:
        return img.permute(1, 2, 0).numpy().copy()
    colors = instance_colors(len(labels))
    if "masks" in prediction:
        masks = binary_masks(prediction["masks"], mask_threshold)[keep]
        img = draw_segmentation_masks(img, masks, alpha=alpha, colors=colors)
    names = [f"{class_names[c] if 0 <= c < len(class_names) else c} {s:.2f}" for c, s in zip(labels, scores)]
    img = draw_bounding_boxes(img, boxes, labels=names, colors=colors, width=1)
    if prediction.get("keypoints") is not None:
        from torchvision.utils import draw_keypoints

        kps = torch.as_tensor(prediction["keypoints"]).cpu().float()[keep]
        links = [tuple(int(i) for i in pair) for pair in skeleton] if skeleton else None
        size = max(1, round(min(img.shape[-2:]) / 160))
        for kp, color in zip(kps, colors):
            img = draw_keypoints(img, kp[None, :, :2], connectivity=links, colors=color, radius=size + 1,
                                 width=size, visibility=kp[None, :, 2] > 0)
    return img.permute(1, 2, 0).numpy().copy()
