"""Segmentation losses, registered in :data:`segzoo.registry.LOSSES`.

A loss builder takes the engine's :class:`LossContext` positionally and config keys as keywords,
and returns a module ``loss(logits (B, K, H, W) float, target (B, H, W) int64) -> scalar``.
"""

from segzoo.losses.base import LossContext, build_loss
from segzoo.losses.cross_entropy import CrossEntropyLoss, cross_entropy

__all__ = ["CrossEntropyLoss", "LossContext", "build_loss", "cross_entropy"]
