"""Optimizers and learning-rate schedules, registered for configs.

Builders take what the engine supplies positionally (parameters; optimizer and ``max_iters``)
and config keys as keywords. Schedules are per iteration.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from segzoo.registry import OPTIMIZERS, SCHEDULERS


@OPTIMIZERS.register("sgd")
def sgd(
    params: Iterable,
    /,
    *,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD with momentum (FCN: lr 1e-4 unnormalised loss / 1e-2 mean loss, momentum 0.9)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def _warmup(it: int, warmup_iters: int, warmup_ratio: float) -> float:
    if warmup_iters <= 0 or it >= warmup_iters:
        return 1.0
    return warmup_ratio + (1.0 - warmup_ratio) * it / warmup_iters


@SCHEDULERS.register("poly")
def poly(
    optimizer: torch.optim.Optimizer,
    max_iters: int,
    /,
    *,
    power: float = 0.9,
    min_lr: float = 0.0,
    warmup_iters: int = 0,
    warmup_ratio: float = 0.1,
) -> LambdaLR:
    """Poly decay ``lr = (base - min_lr) * (1 - it / max_iters) ** power + min_lr`` (DeepLab v2),
    times a linear warmup from ``warmup_ratio`` to 1 over the first ``warmup_iters`` iterations."""

    def factor(base: float):
        def f(it: int) -> float:
            decay = (1 - min(it, max_iters) / max_iters) ** power
            lr = (base - min_lr) * decay + min_lr
            return (lr / base if base > 0 else 0.0) * _warmup(it, warmup_iters, warmup_ratio)

        return f

    return LambdaLR(optimizer, [factor(g["lr"]) for g in optimizer.param_groups])


@SCHEDULERS.register("constant")
def constant(
    optimizer: torch.optim.Optimizer,
    max_iters: int,
    /,
    *,
    warmup_iters: int = 0,
    warmup_ratio: float = 0.1,
) -> LambdaLR:
    """Constant learning rate after an optional linear warmup."""
    return LambdaLR(optimizer, lambda it: _warmup(it, warmup_iters, warmup_ratio))
