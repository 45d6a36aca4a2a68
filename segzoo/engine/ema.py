"""Exponential moving average (EMA) of model weights (``train.ema``).

After every optimizer step, each floating-point entry of the model's state (parameters and
buffers, e.g. BatchNorm running statistics) moves towards the model's:
``ema = d * ema + (1 - d) * model``; integer buffers are copied. With ``warmup`` the decay ramps
up as ``d_t = min(decay, (1 + t) / (10 + t))`` (t = updates so far), so early, poor weights fade
quickly. Evaluation and ``best.pt`` use the EMA weights when EMA is on.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """A frozen, eval-mode copy of ``model`` that tracks its weights.

    Args:
        model: the model being trained (not a DDP or compiled wrapper).
        decay: the EMA decay in (0, 1) (0.9999 suits ~100k iterations; shorter runs want less).
        warmup: ramp the decay up over the first updates (see the module docstring).

    Raises:
        ValueError: decay outside (0, 1).
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.9999, warmup: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0

    def current_decay(self) -> float:
        if self.warmup:
            return min(self.decay, (1 + self.updates) / (10 + self.updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the EMA weights one step towards ``model``'s."""
        d = self.current_decay()
        self.updates += 1
        source = model.state_dict()
        for name, value in self.module.state_dict().items():
            new = source[name].detach()
            if value.is_floating_point():
                value.lerp_(new.to(value.dtype), 1.0 - d)
            else:
                value.copy_(new)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
