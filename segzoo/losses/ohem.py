"""Online hard example mining (OHEM) cross-entropy: the loss over the hardest pixels only
(Shrivastava et al., CVPR 2016, applied per pixel as in mmsegmentation's OHEMPixelSampler and
PSPNet/ICNet training)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segzoo.losses.base import LossContext
from segzoo.losses.cross_entropy import ClassWeights, resolve_class_weights
from segzoo.registry import LOSSES


class OhemCrossEntropyLoss(nn.Module):
    """Mean cross-entropy over the hard pixels of a batch.

    ``forward(logits (B, K, H, W) float, target (B, H, W) int64) -> scalar``. Among the labelled
    pixels (not ``ignore_index``), a pixel is hard when the predicted probability of its true class
    is below ``thresh``; when fewer than ``min_kept * B`` pixels are (B images), the
    ``min_kept * B`` pixels of highest loss (lowest probability) are kept instead, as
    mmsegmentation's OHEMPixelSampler. Without ``thresh``, always the ``min_kept * B`` hardest.
    The loss is the (class-weighted) mean over kept pixels; 0 (with a graph) when no pixel is
    labelled.

    Args:
        num_classes, ignore_index: of the data.
        thresh: probability threshold in (0, 1] (0.7 in PSPNet/mmseg configs) or None.
        min_kept: pixels kept per image at least (mmseg uses 100000 per batch for 512x1024 crops).
        class_weights: optional K weights.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, thresh: float | None = 0.7,
                 min_kept: int = 100000, class_weights: list[float] | None = None) -> None:
        super().__init__()
        if thresh is not None and not 0.0 < thresh <= 1.0:
            raise ValueError(f"ohem thresh must lie in (0, 1], got {thresh}")
        if min_kept < 1:
            raise ValueError(f"ohem min_kept must be >= 1, got {min_kept}")
        self.ignore_index, self.thresh, self.min_kept = ignore_index, thresh, min_kept
        if class_weights is not None:
            if len(class_weights) != num_classes:
                raise ValueError(f"class_weights has {len(class_weights)} values for {num_classes} classes")
            self.register_buffer("weight", torch.tensor(class_weights, dtype=torch.float32))
        else:
            self.weight = None

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float()
        valid = target != self.ignore_index
        n_valid = int(valid.sum())
        if n_valid == 0:
            return logits.sum() * 0.0
        pixel_loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        with torch.no_grad():
            kept = min(self.min_kept * target.shape[0], n_valid)
            hard = valid & (torch.exp(-pixel_loss) < self.thresh) if self.thresh is not None else None
            if hard is None or int(hard.sum()) < kept:  # too few below thresh: the `kept` hardest
                hard = self._top_loss(pixel_loss, valid, kept)
        w = hard.float()
        if self.weight is not None:
            w = w * self.weight[target.clamp(0, len(self.weight) - 1)]
        return (pixel_loss * w).sum() / w.sum().clamp(min=1e-12)

    @staticmethod
    def _top_loss(pixel_loss: Tensor, valid: Tensor, kept: int) -> Tensor:
        flat = torch.where(valid, pixel_loss, torch.full_like(pixel_loss, -1.0)).reshape(-1)
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[flat.topk(kept).indices] = True
        return keep.view_as(valid) & valid


@LOSSES.register("ohem_cross_entropy")
def ohem_cross_entropy(
    ctx: LossContext,
    /,
    *,
    thresh: float | None = 0.7,
    min_kept: int = 100000,
    class_weights: ClassWeights = None,
) -> OhemCrossEntropyLoss:
    """OHEM cross-entropy (see :class:`OhemCrossEntropyLoss`)."""
    return OhemCrossEntropyLoss(ctx.num_classes, ctx.ignore_index, thresh, min_kept,
                                resolve_class_weights(ctx, class_weights))
