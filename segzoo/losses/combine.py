"""Several losses on the same output, each with a weight from config::

    loss:                                  # one loss (weight 1) ...
      name: cross_entropy
    loss:                                  # ... or a weighted list
      - {name: cross_entropy, weight: 1.0}
      - {name: dice, weight: 0.5}

``weight`` is read by the engine, the other keys go to the loss builder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from segzoo.losses.base import LossContext, build_loss


class LossSet(nn.Module):
    """Named, weighted losses: ``forward(logits, target)`` returns ``{name: weight * loss}``.

    Args:
        losses: name -> loss module (``loss(logits, target) -> scalar``).
        weights: name -> weight (default 1).
    """

    def __init__(self, losses: dict[str, nn.Module], weights: dict[str, float] | None = None) -> None:
        super().__init__()
        if not losses:
            raise ValueError("a LossSet needs at least one loss")
        self.losses = nn.ModuleDict(losses)
        self.weights = {k: float((weights or {}).get(k, 1.0)) for k in losses}

    def forward(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {k: self.weights[k] * loss(logits, target) for k, loss in self.losses.items()}


def build_losses(specs: Any | Sequence[Any], ctx: LossContext) -> LossSet:
    """A :class:`LossSet` from one spec or a list of specs (``{name, weight?, **kwargs}`` dicts
    or objects with ``name`` and ``kwargs``). Repeated names get suffixes ``_2``, ``_3``...

    Raises:
        RegistryError: an unknown loss name; ValueError: from a loss builder.
    """
    if not isinstance(specs, (list, tuple)):
        specs = [specs]
    losses: dict[str, nn.Module] = {}
    weights: dict[str, float] = {}
    for spec in specs:
        if isinstance(spec, dict):
            name, kwargs = spec["name"], {k: v for k, v in spec.items() if k != "name"}
        else:
            name, kwargs = spec.name, dict(spec.kwargs)
        weight = kwargs.pop("weight", 1.0)
        key, n = name, 1
        while key in losses:
            n += 1
            key = f"{name}_{n}"
        losses[key] = build_loss(name, ctx, **kwargs)
        weights[key] = weight
    return LossSet(losses, weights)
