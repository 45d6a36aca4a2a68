"""Class weights from label frequencies: median-frequency balancing (Eigen & Fergus, ICCV 2015;
used by SegNet, Badrinarayanan et al., TPAMI 2017, Sec. 3.6 on CamVid)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset


def label_statistics(dataset: Dataset, num_classes: int, ignore_index: int) -> tuple[list[int], list[int]]:
    """Count, over every label map of ``dataset`` (before transforms: ``dataset.load(i)["mask"]``),
    the pixels of each class and the pixels of the images in which each class appears.

    Returns ``(class_pixels, image_pixels)``, two lists of K ints; ``ignore_index`` pixels count
    for neither.
    """
    class_pixels = torch.zeros(num_classes, dtype=torch.int64)
    image_pixels = torch.zeros(num_classes, dtype=torch.int64)
    load = dataset.load if hasattr(dataset, "load") else dataset.__getitem__
    for i in range(len(dataset)):  # type: ignore[arg-type]
        mask = torch.as_tensor(load(i)["mask"]).reshape(-1).long()
        mask = mask[mask != ignore_index]
        counts = torch.bincount(mask, minlength=num_classes)[:num_classes]
        class_pixels += counts
        image_pixels += (counts > 0).long() * mask.numel()
    return class_pixels.tolist(), image_pixels.tolist()


def median_frequency_weights(class_pixels: Sequence[int], image_pixels: Sequence[int]) -> list[float]:
    """Weights ``median(freq) / freq(c)`` with ``freq(c) = class_pixels[c] / image_pixels[c]``
    (the class's pixel share in the images where it appears); the median is over the classes that
    appear. Classes that never appear get weight 0.

    Raises:
        ValueError: lists of different lengths, or no class appears at all.
    """
    if len(class_pixels) != len(image_pixels):
        raise ValueError("class_pixels and image_pixels must have one value per class")
    cp = torch.tensor(class_pixels, dtype=torch.float64)
    ip = torch.tensor(image_pixels, dtype=torch.float64)
    present = cp > 0
    if not bool(present.any()):
        raise ValueError("no labelled pixels: cannot compute median-frequency weights")
    freq = torch.where(present, cp / ip.clamp(min=1), torch.zeros_like(cp))
    median = float(freq[present].quantile(0.5))  # the middle value; the mean of the two middle ones
    weights = torch.where(present, median / freq.clamp(min=1e-30), torch.zeros_like(freq))
    return weights.tolist()
