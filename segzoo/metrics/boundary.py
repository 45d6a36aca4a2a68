"""Boundary IoU (Cheng, Girshick, Dollár, Berg & Kirillov, CVPR 2021) for semantic segmentation.

For a binary mask M of an image of size H x W, its boundary region is the set of pixels of M
within distance d of M's contour: ``M - erode(M, d)`` where the erosion is by a (2d+1) x (2d+1)
square (d iterations of a 3x3 erosion) and the image border counts as outside M, so masks cut by
the border have a boundary there. ``d = max(1, round(0.02 * sqrt(H^2 + W^2)))``: detectron2's
``mask_to_boundary`` (dilation ratio 0.02 of the image diagonal).

Per class c, with G_c / P_c the boundary regions of (gt == c) / (pred == c) in each image,

    bIoU[c] = sum over images |G_c & P_c & valid| / sum over images |(G_c | P_c) & valid|

accumulated over the dataset as two counts per class (never holding predictions); ``valid`` drops
pixels labelled ``ignore_index`` (like the confusion matrix). NaN for a class whose boundary union is
empty (absent from gt and prediction); ``mBIoU`` is the mean over the other classes.

Difference from detectron2's ``SemSegEvaluator``: it applies ``mask_to_boundary`` to the whole label
map as a grey-level image and bins the resulting differences, which does not give per-class boundary
regions; segzoo applies it per class, as the paper (and detectron2's instance boundary IoU) does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def boundary_dilation(height: int, width: int, ratio: float = 0.02) -> int:
    """Boundary width in pixels for an image: ``max(1, round(ratio * diagonal))``."""
    return max(1, int(round(ratio * math.sqrt(height**2 + width**2))))


def mask_boundary(masks: Tensor, dilation: int) -> Tensor:
    """Inner boundary regions of binary masks.

    Args:
        masks: (..., H, W) bool (or 0/1) masks.
        dilation: boundary width d >= 1 in pixels.

    Returns:
        bool tensor of the same shape: pixels of the mask within Chebyshev distance d of a pixel
        outside it (outside the image counts as outside the mask).
    """
    shape = masks.shape
    m = masks.reshape(-1, 1, *shape[-2:]).bool()
    k = 2 * dilation + 1
    outside = F.pad((~m).to(torch.float32), (dilation,) * 4, value=1.0)
    # erosion by a square = separable max-pool of the complement (rows, then columns)
    near_outside = F.max_pool2d(F.max_pool2d(outside, (1, k), stride=1), (k, 1), stride=1) > 0.5
    return (m & near_outside).reshape(shape)


def label_boundary(labels: Tensor, dilation: int) -> Tensor:
    """For label maps (..., H, W) of integers >= 0: True where the pixel lies in the boundary
    region of its own label's mask, i.e. some pixel within Chebyshev distance ``dilation`` has
    another label or lies outside the image.

    ``(labels == c) & label_boundary(labels, d)`` equals ``mask_boundary(labels == c, d)`` for
    every c, at the cost of one max/min filter for all classes together.
    """
    shape = labels.shape
    x = F.pad(labels.reshape(-1, 1, *shape[-2:]).to(torch.float32), (dilation,) * 4, value=-1.0)
    k = 2 * dilation + 1

    def window_max(t: Tensor) -> Tensor:
        return F.max_pool2d(F.max_pool2d(t, (1, k), stride=1), (k, 1), stride=1)

    return (window_max(x) != -window_max(-x)).reshape(shape)


class BoundaryIoU:
    """Streaming per-class boundary IoU (see the module docstring).

    Args:
        num_classes: K; predictions and targets hold values in [0, K) (targets also
            ``ignore_index``).
        ignore_index: target value whose pixels never count.
        dilation_ratio: boundary width as a fraction of the image diagonal (0.02 as detectron2).
        device: where the counts live (the predictions' device).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, *, dilation_ratio: float = 0.02,
                 device: str | torch.device | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.dilation_ratio = dilation_ratio
        self.intersection = torch.zeros(num_classes, dtype=torch.int64, device=device)
        self.union = torch.zeros(num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.intersection.zero_()
        self.union.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch of label maps ``pred`` and ``target``, (B, H, W) or (H, W), equal shapes.

        Raises:
            ValueError: different shapes, or values outside [0, K) other than ``ignore_index``.
        """
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        k = self.num_classes
        dev = self.intersection.device
        pred = pred.to(dev).long()
        target = target.to(dev).long()
        h, w = target.shape[-2:]
        d = boundary_dilation(h, w, self.dilation_ratio)
        valid = target != self.ignore_index
        if bool(((target < 0) | (target >= k))[valid].any()) or bool(((pred < 0) | (pred >= k)).any()):
            raise ValueError(f"labels must lie in [0, {k}) (targets may also be {self.ignore_index})")
        # the ignored label is a region of its own in the target (as detectron2 bins it)
        g_edge = label_boundary(torch.where(valid, target, k), d) & valid
        p_edge = label_boundary(pred, d) & valid
        both = g_edge & p_edge & (pred == target)
        inter = torch.bincount(target[both], minlength=k)
        self.intersection += inter
        self.union += torch.bincount(target[g_edge], minlength=k) + \
            torch.bincount(pred[p_edge], minlength=k) - inter

    def compute(self, class_names: Sequence[str] | None = None) -> dict:
        """``{"mBIoU": float, "bIoU": {class name: float}}`` (NaN where undefined)."""
        inter, union = self.intersection.double().cpu(), self.union.double().cpu()
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for {self.num_classes} classes")
        biou = torch.where(union > 0, inter / union.clamp(min=1), torch.tensor(float("nan"), dtype=torch.float64))
        defined = biou[~torch.isnan(biou)]
        return {"mBIoU": float(defined.mean()) if defined.numel() else float("nan"),
                "bIoU": dict(zip(names, biou.tolist()))}
