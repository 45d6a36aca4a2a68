"""What every loss builder receives from the engine, and building losses from config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from segzoo.registry import LOSSES

# (pixels of each class, pixels of the images in which each class appears), over the training set
LabelStats = tuple[list[int], list[int]]


@dataclass(frozen=True)
class LossContext:
    """Facts about the data a loss may need.

    Attributes:
        num_classes: K.
        ignore_index: the label value excluded from losses.
        label_stats: computes (or loads from cache) the training set's label statistics, for
            losses that ask for them (``class_weights: median_frequency``); None when no training
            set is at hand.
    """

    num_classes: int
    ignore_index: int = 255
    label_stats: Callable[[], LabelStats] | None = None


def build_loss(name: str, ctx: LossContext, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name`` (RegistryError lists close matches if unknown)."""
    return LOSSES.build(name, ctx, **kwargs)
