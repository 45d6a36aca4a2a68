"""Pixel-wise cross-entropy with ``ignore_index`` and optional class weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segzoo.losses.base import LossContext
from segzoo.losses.class_weights import median_frequency_weights
from segzoo.registry import LOSSES

ClassWeights = list[float] | Literal["median_frequency"] | None


def resolve_class_weights(ctx: LossContext, class_weights: ClassWeights) -> list[float] | None:
    """Explicit weights as given; ``"median_frequency"`` computed from the training set's label
    statistics (:func:`~segzoo.losses.class_weights.median_frequency_weights`).

    Raises:
        ValueError: median-frequency weights asked for without a training set.
    """
    if class_weights != "median_frequency":
        return class_weights  # type: ignore[return-value]
    if ctx.label_stats is None:
        raise ValueError("class_weights: median_frequency needs the training set's labels, which "
                         "the engine provides only when training")
    return median_frequency_weights(*ctx.label_stats())


class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy over labelled pixels.

    ``forward(logits, target)``: logits (B, K, H, W) float, target (B, H, W) int64 with values in
    [0, K) or ``ignore_index``. Returns a scalar: the (class-weighted) mean over pixels whose label
    is not ``ignore_index``; 0 (with a graph) when every pixel is ignored, never NaN.

    Args:
        num_classes: K.
        ignore_index: label value excluded from the loss.
        class_weights: optional K weights (e.g. median-frequency balancing as in SegNet); the mean
            is then weighted, as in ``torch.nn.CrossEntropyLoss(weight=...)``.
        label_smoothing: as in ``torch.nn.functional.cross_entropy``.

    Raises:
        ValueError: ``class_weights`` of the wrong length or with negative values.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        if class_weights is not None:
            if len(class_weights) != num_classes:
                raise ValueError(
                    f"class_weights has {len(class_weights)} values for {num_classes} classes"
                )
            if min(class_weights) < 0:
                raise ValueError("class_weights must be non-negative")
            self.register_buffer("weight", torch.tensor(class_weights, dtype=torch.float32))
        else:
            self.weight = None

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        valid = target != self.ignore_index
        if not bool(valid.any()):
            return logits.sum() * 0.0
        total = F.cross_entropy(
            logits, target, weight=self.weight, ignore_index=self.ignore_index,
            reduction="sum", label_smoothing=self.label_smoothing,
        )
        denom = self.weight[target[valid]].sum() if self.weight is not None else valid.sum()
        return total / denom.clamp(min=1e-12)


@LOSSES.register("cross_entropy")
def cross_entropy(
    ctx: LossContext,
    /,
    *,
    class_weights: ClassWeights = None,
    label_smoothing: float = 0.0,
) -> CrossEntropyLoss:
    """Cross-entropy with the data's ``ignore_index`` (see :class:`CrossEntropyLoss`).

    ``class_weights``: K floats, or ``median_frequency`` for SegNet's median-frequency balancing
    computed from the training set (cached in the run folder, logged in train.log)."""
    weights = resolve_class_weights(ctx, class_weights)
    return CrossEntropyLoss(ctx.num_classes, ctx.ignore_index, weights, label_smoothing)
