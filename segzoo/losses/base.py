"""What every loss builder receives from the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from segzoo.registry import LOSSES


@dataclass(frozen=True)
class LossContext:
    """Facts about the data a loss may need: class count and the ignored label value."""

    num_classes: int
    ignore_index: int = 255


def build_loss(name: str, ctx: LossContext, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name`` (RegistryError lists close matches if unknown)."""
    return LOSSES.build(name, ctx, **kwargs)
