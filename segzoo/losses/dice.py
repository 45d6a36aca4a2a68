"""Soft Dice loss (Milletari et al., V-Net, 3DV 2016), multi-class, with ``ignore_index``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from segzoo.losses.base import LossContext
from segzoo.registry import LOSSES


class DiceLoss(nn.Module):
    """``1 - mean_c dice_c`` over the labelled pixels of a batch.

    ``dice_c = (2 * sum(p_c * t_c) + smooth) / (sum(p_c) + sum(t_c) + smooth)`` where ``p_c`` is the
    softmax probability of class c and ``t_c`` the one-hot target, summed over every labelled pixel
    of the batch (pixels labelled ``ignore_index`` are left out). The mean runs over all K classes;
    a class absent from both target and prediction scores ~1 thanks to ``smooth``.

    ``forward(logits (B, K, H, W) float, target (B, H, W) int64) -> scalar`` in [0, 1].
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, smooth: float = 1.0) -> None:
        super().__init__()
        if smooth < 0:
            raise ValueError(f"dice smooth must be >= 0, got {smooth}")
        self.num_classes, self.ignore_index, self.smooth = num_classes, ignore_index, smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        valid = (target != self.ignore_index).unsqueeze(1)  # (B, 1, H, W)
        prob = logits.float().softmax(1) * valid
        onehot = F.one_hot(target.clamp(0, self.num_classes - 1), self.num_classes)
        onehot = onehot.permute(0, 3, 1, 2).to(prob.dtype) * valid
        dims = (0, 2, 3)
        inter = (prob * onehot).sum(dims)
        denom = prob.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth).clamp(min=1e-12)
        return 1.0 - dice.mean()


@LOSSES.register("dice")
def dice(ctx: LossContext, /, *, smooth: float = 1.0) -> DiceLoss:
    """Soft multi-class Dice loss (see :class:`DiceLoss`)."""
    return DiceLoss(ctx.num_classes, ctx.ignore_index, smooth)
