"""Semantic segmentation metrics from a streaming, dataset-wide confusion matrix.

Definitions (as mmsegmentation; see docs/evaluation.md), with ``cm[g, p]`` = pixels of ground-truth
class g predicted as p, pixels labelled ``ignore_index`` excluded:

* ``pixel_acc`` = trace(cm) / cm.sum()                (mmsegmentation's aAcc)
* ``acc[c]``    = cm[c, c] / cm[c, :].sum()           (recall; NaN when c is absent from gt)
* ``IoU[c]``    = cm[c, c] / (cm[c, :].sum() + cm[:, c].sum() - cm[c, c])
                                                       (NaN when c is absent from gt AND pred)
* ``dice[c]``   = 2 cm[c, c] / (cm[c, :].sum() + cm[:, c].sum())
                                                       (Dice = F1 of class c; NaN when c is absent
                                                       from gt AND pred)
* ``mean_acc``, ``mIoU``, ``mDice`` = means over the non-NaN classes: a class absent from both the
  ground truth and the predictions of the whole dataset is reported as NaN and left out of the
  means (mmsegmentation's convention); a class only predicted has IoU = Dice = 0 and counts.
* ``fwIoU``     = sum_c (cm[c, :].sum() / cm.sum()) * IoU[c]   (frequency weighted IoU, Long et al.
                                                       2015 sec. 5; classes absent from gt weigh 0)

IoU is computed from counts accumulated over the whole dataset, not averaged per image. Boundary
IoU lives in :mod:`segzoo.metrics.boundary`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class ConfusionMatrix:
    """Accumulates a (K, K) int64 confusion matrix on the predictions' device.

    Only the counts are kept (never the predictions), so memory is O(K^2) however large the
    dataset. ``update(pred, target)`` takes label maps of equal shape (e.g. (B, H, W)).

    Raises (update):
        ValueError: shapes differ, target values outside [0, K) that are not ``ignore_index``,
            or predictions outside [0, K).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        k = self.num_classes
        pred = pred.to(self.matrix.device).reshape(-1).long()
        target = target.to(self.matrix.device).reshape(-1).long()
        # the whole prediction, ignored pixels included: a model predicting out of range is wrong
        if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= k):
            bad = torch.unique(pred[(pred < 0) | (pred >= k)]).tolist()[:10]
            raise ValueError(f"predictions {bad} lie outside [0, {k})")
        valid = target != self.ignore_index
        pred, target = pred[valid], target[valid]
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= k):
            bad = torch.unique(target[(target < 0) | (target >= k)]).tolist()[:10]
            raise ValueError(
                f"target values {bad} are outside [0, {k}) and not ignore_index={self.ignore_index}"
            )
        self.matrix += torch.bincount(target * k + pred, minlength=k * k).view(k, k)

    def compute(self, class_names: Sequence[str] | None = None) -> dict:
        """The metrics of the counts so far (see the module docstring)."""
        return metrics_from_confusion(self.matrix, class_names)


def metrics_from_confusion(cm: Tensor, class_names: Sequence[str] | None = None) -> dict:
    """Metrics of a (K, K) confusion matrix ``cm[gt, pred]``.

    Returns ``{"pixel_acc", "mean_acc", "mIoU", "fwIoU", "mDice": float, "acc", "IoU", "dice":
    {class name: float}}``; per-class values are NaN where undefined (see module docstring).
    Values are fractions in [0, 1].
    """
    cm = cm.double().cpu()
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}-class confusion matrix")
    tp = cm.diag()
    gt = cm.sum(1)
    pred = cm.sum(0)
    union = gt + pred - tp
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), nan)
    iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
    dice = torch.where(gt + pred > 0, 2 * tp / (gt + pred).clamp(min=1), nan)
    total = cm.sum()
    fwiou = float((gt / total * torch.nan_to_num(iou)).sum()) if total > 0 else float("nan")
    return {
        "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_acc": _nanmean(acc),
        "mIoU": _nanmean(iou),
        "fwIoU": fwiou,
        "mDice": _nanmean(dice),
        "acc": dict(zip(names, acc.tolist())),
        "IoU": dict(zip(names, iou.tolist())),
        "dice": dict(zip(names, dice.tolist())),
    }


def _nanmean(x: Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float("nan")
