"""Segmentation losses, registered in :data:`segzoo.registry.LOSSES`.

A loss builder takes the engine's :class:`LossContext` positionally and config keys as keywords,
and returns a module ``loss(logits (B, K, H, W) float, target (B, H, W) int64) -> scalar``.
:func:`build_losses` combines several, weighted, from config.
"""

from segzoo.losses.base import LossContext, build_loss
from segzoo.losses.class_weights import label_statistics, median_frequency_weights
from segzoo.losses.combine import LossSet, build_losses
from segzoo.losses.cross_entropy import CrossEntropyLoss, cross_entropy
from segzoo.losses.dice import DiceLoss, dice
from segzoo.losses.ohem import OhemCrossEntropyLoss, ohem_cross_entropy

__all__ = [
    "CrossEntropyLoss",
    "DiceLoss",
    "LossContext",
    "LossSet",
    "OhemCrossEntropyLoss",
    "build_loss",
    "build_losses",
    "cross_entropy",
    "dice",
    "label_statistics",
    "median_frequency_weights",
    "ohem_cross_entropy",
]
