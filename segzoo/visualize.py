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
