"""Instance metrics of the nucleus community: the DSB 2018 score and a count of merged nuclei.

Both compare two **instance id maps** of one image, (H, W) integers with 0 for background and one
positive id per object (a pixel belongs to at most one object):

* **DSB mAP** (:func:`dsb_image_ap`), the 2018 Data Science Bowl's metric (Caicedo et al., Nature
  Methods 16, 2019): at each IoU threshold t in 0.50, 0.55, ..., 0.95 a prediction matches a
  ground-truth object when their IoU exceeds t (one to one for t >= 0.5, since non-overlapping
  objects cannot both overlap a third by more than half), and the image's precision at t is
  TP / (TP + FP + FN). The image score is the mean over thresholds; the dataset score is the mean
  over images. An image with no objects and no predictions scores 1, with predictions 0.
* **Merged nuclei** (:func:`merged_instances`): a ground-truth nucleus is *merged* when its
  best-matching prediction (highest IoU) also covers at least ``cover`` (default half) of the
  pixels of another ground-truth nucleus: the failure of connected components on touching objects.

:class:`NucleiScore` accumulates both over images. Predictions of either task become id maps with
:func:`id_map_from_masks` (detections pasted by descending score, as the semantic row's pasting).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

DSB_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _np(x: np.ndarray | Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def id_map_from_masks(masks: np.ndarray | Tensor, scores: Sequence[float] | Tensor | None = None, *,
                      score_threshold: float = 0.0, mask_threshold: float = 0.5) -> np.ndarray:
    """Paste instance masks into an id map, highest score first (a pixel keeps the first id).

    Args:
        masks: (N, H, W) or (N, 1, H, W) bool masks or probabilities in [0, 1].
        scores: (N,) scores (default: the given order); masks below ``score_threshold`` are dropped.
        mask_threshold: probability above which a pixel is in the mask.

    Returns:
        (H, W) int64 map, ids 1..n in pasting order, 0 background.
    """
    m = _np(masks)
    if m.ndim == 4:
        m = m[:, 0]
    if m.ndim != 3:
        raise ValueError(f"masks must be (N, H, W) or (N, 1, H, W), got shape {m.shape}")
    m = m > mask_threshold if m.dtype != bool else m
    out = np.zeros(m.shape[1:], dtype=np.int64)
    order = np.arange(len(m))
    if scores is not None:
        s = _np(scores).reshape(-1).astype(np.float64)
        if s.size != len(m):
            raise ValueError(f"{s.size} scores for {len(m)} masks")
        order = np.argsort(-s, kind="stable")
        order = order[s[order] >= score_threshold]
    next_id = 1
    for i in order:
        new = m[i] & (out == 0)
        if new.any():
            out[new] = next_id
            next_id += 1
    return out


def _overlaps(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersection (G, P), gt areas (G,), pred areas (P,)) over the objects present, ids
    renumbered 1..G and 1..P in increasing order."""
    pred, gt = _np(pred), _np(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction id map is {pred.shape} but the ground truth is {gt.shape}")
    _, p = np.unique(pred, return_inverse=True)
    _, g = np.unique(gt, return_inverse=True)
    p, g = p.reshape(-1), g.reshape(-1)
    # index 0 is background when the map has any (ids are >= 0)
    p_off = 1 if (pred == 0).any() else 0
    g_off = 1 if (gt == 0).any() else 0
    n_p, n_g = int(p.max(initial=-1)) + 1, int(g.max(initial=-1)) + 1
    joint = np.bincount(g * n_p + p, minlength=n_g * n_p).reshape(n_g, n_p)
    inter = joint[g_off:, p_off:]
    return inter, joint[g_off:].sum(1), joint[:, p_off:].sum(0)


def _iou(inter: np.ndarray, area_g: np.ndarray, area_p: np.ndarray) -> np.ndarray:
    union = area_g[:, None] + area_p[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def iou_matrix(pred: np.ndarray | Tensor, gt: np.ndarray | Tensor) -> np.ndarray:
    """(G, P) IoU between the objects of two id maps of equal shape (ids in increasing order)."""
    return _iou(*_overlaps(_np(pred), _np(gt)))


def dsb_image_ap(pred: np.ndarray | Tensor, gt: np.ndarray | Tensor,
                 thresholds: Sequence[float] = DSB_THRESHOLDS) -> float:
    """The DSB 2018 score of one image (see the module docstring), in [0, 1].

    Raises:
        ValueError: the maps differ in shape.
    """
    return _dsb_ap(iou_matrix(pred, gt), thresholds)


def _dsb_ap(iou: np.ndarray, thresholds: Sequence[float] = DSB_THRESHOLDS) -> float:
    n_gt, n_pred = iou.shape
    if n_gt == 0 and n_pred == 0:
        return 1.0
    scores = []
    for t in thresholds:
        tp = int((iou > t).any(axis=1).sum()) if n_pred else 0
        scores.append(tp / (n_gt + n_pred - tp))  # TP / (TP + FP + FN)
    return float(np.mean(scores))


def merged_instances(pred: np.ndarray | Tensor, gt: np.ndarray | Tensor, cover: float = 0.5) -> int:
    """How many ground-truth objects are merged with a neighbour by their best-matching prediction
    (see the module docstring); objects no prediction touches are not merged."""
    return _merged(*_overlaps(_np(pred), _np(gt)), cover)


def _merged(inter: np.ndarray, area_g: np.ndarray, area_p: np.ndarray, cover: float) -> int:
    if inter.size == 0:
        return 0
    iou = _iou(inter, area_g, area_p)
    best = iou.argmax(axis=1)  # (G,) best prediction of each object
    covered = inter >= cover * np.maximum(area_g[:, None], 1)  # (G, P): prediction covers object
    touched = iou.max(axis=1) > 0
    n_covered = covered[:, best].sum(axis=0)  # (G,) objects covered by each object's best prediction
    own = covered[np.arange(len(best)), best]
    others = n_covered - own.astype(np.int64)
    return int(((others > 0) & touched).sum())


class NucleiScore:
    """Accumulates the DSB score and the merged count over images (:meth:`update` per image).

    :meth:`compute` returns ``dsb_mAP`` (mean over images, 0..1), ``merged`` (objects merged),
    ``merged_frac`` (of all ground-truth objects), ``num_objects`` and ``num_pred_objects``.
    """

    def __init__(self, cover: float = 0.5) -> None:
        self.cover = cover
        self.rows: list[tuple[float, int, int, int]] = []  # (ap, merged, n_gt, n_pred) per image

    def update(self, pred: np.ndarray | Tensor, gt: np.ndarray | Tensor) -> float:
        """Add one image's id maps; returns its DSB score."""
        overlaps = _overlaps(_np(pred), _np(gt))  # one pass over the pixels for both numbers
        ap = _dsb_ap(_iou(*overlaps))
        n_gt, n_pred = overlaps[0].shape
        self.rows.append((ap, _merged(*overlaps, self.cover), n_gt, n_pred))
        return ap

    def state(self) -> list[tuple[float, int, int, int]]:
        return list(self.rows)

    def merge(self, states: Sequence[list]) -> None:
        """Replace the rows by those of several processes (each a :meth:`state`)."""
        self.rows = [tuple(r) for s in states for r in s]

    def compute(self) -> dict[str, float | int | None]:
        if not self.rows:
            return {"dsb_mAP": None, "merged": 0, "merged_frac": None, "num_objects": 0, "num_pred_objects": 0}
        a = np.asarray(self.rows, dtype=np.float64)
        n_gt = int(a[:, 2].sum())
        return {"dsb_mAP": float(a[:, 0].mean()), "merged": int(a[:, 1].sum()),
                "merged_frac": float(a[:, 1].sum() / n_gt) if n_gt else None,
                "num_objects": n_gt, "num_pred_objects": int(a[:, 3].sum())}


def gt_id_map(instances: dict, size: tuple[int, int]) -> np.ndarray:
    """The id map of a ground-truth instance dict (``masks`` (N, H, W)); crowd regions are left
    out. Where masks overlap, the later one wins (the dsb2018 files' convention)."""
    masks = instances.get("masks")
    if masks is None or len(masks) == 0:
        return np.zeros(size, dtype=np.int64)
    m = _np(masks).astype(bool)
    crowd = _np(instances.get("iscrowd", torch.zeros(len(m)))).reshape(-1).astype(bool)
    out = np.zeros(m.shape[1:], dtype=np.int64)
    for i in range(len(m)):
        if not crowd[i]:
            out[m[i]] = i + 1
    return out


__all__ = ["DSB_THRESHOLDS", "NucleiScore", "dsb_image_ap", "gt_id_map", "id_map_from_masks",
           "iou_matrix", "merged_instances"]
