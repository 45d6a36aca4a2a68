"""Per-iteration learning-rate schedules with linear warmup, registered for configs.

A schedule builder takes the optimizer and ``train.max_iters`` positionally and config keys as
keywords, and returns a :class:`torch.optim.lr_scheduler.LambdaLR` stepped once per iteration
(optimizer step). Each parameter group follows the schedule from its own initial lr (so a
backbone group at ``lr * backbone_lr_mult`` keeps its ratio); ``min_lr`` is an absolute floor
scaled by the group's ``lr_mult``. Every schedule multiplies by a linear warmup from
``warmup_ratio`` to 1 over the first ``warmup_iters`` iterations (mmsegmentation's
``LinearLR`` warmup).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from segzoo.registry import SCHEDULERS


def warmup_factor(it: int, warmup_iters: int, warmup_ratio: float) -> float:
    """Linear warmup factor: ``warmup_ratio`` at iteration 0, 1 from ``warmup_iters`` on."""
    if warmup_iters <= 0 or it >= warmup_iters:
        return 1.0
    return warmup_ratio + (1.0 - warmup_ratio) * it / warmup_iters


def _lambda(optimizer: torch.optim.Optimizer, decay: Callable[[int, float, float], float],
            min_lr: float, warmup_iters: int, warmup_ratio: float) -> LambdaLR:
    """LambdaLR whose lr for a group with initial lr ``base`` is
    ``decay(it, base, floor) * warmup(it)``, floor = ``min_lr * lr_mult``."""

    def factor(group: dict) -> Callable[[int], float]:
        base = group["lr"]
        floor = min_lr * group.get("lr_mult", 1.0)

        def f(it: int) -> float:
            if base <= 0:
                return 0.0
            return decay(it, base, floor) / base * warmup_factor(it, warmup_iters, warmup_ratio)

        return f

    return LambdaLR(optimizer, [factor(g) for g in optimizer.param_groups])


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
    """Poly decay ``lr = (base - min_lr) * (1 - it / max_iters) ** power + min_lr`` (DeepLab v2,
    power 0.9), with linear warmup."""

    def decay(it: int, base: float, floor: float) -> float:
        return (base - floor) * (1 - min(it, max_iters) / max_iters) ** power + floor

    return _lambda(optimizer, decay, min_lr, warmup_iters, warmup_ratio)


@SCHEDULERS.register("cosine")
def cosine(
    optimizer: torch.optim.Optimizer,
    max_iters: int,
    /,
    *,
    min_lr: float = 0.0,
    warmup_iters: int = 0,
    warmup_ratio: float = 0.1,
) -> LambdaLR:
    """Cosine annealing ``lr = min_lr + (base - min_lr) * (1 + cos(pi * it / max_iters)) / 2``
    (Loshchilov & Hutter, SGDR, without restarts), with linear warmup."""

    def decay(it: int, base: float, floor: float) -> float:
        return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * min(it, max_iters) / max_iters))

    return _lambda(optimizer, decay, min_lr, warmup_iters, warmup_ratio)


@SCHEDULERS.register("multistep")
def multistep(
    optimizer: torch.optim.Optimizer,
    max_iters: int,
    /,
    *,
    milestones: list[int],
    gamma: float = 0.1,
    warmup_iters: int = 0,
    warmup_ratio: float = 0.1,
) -> LambdaLR:
    """Step decay: lr multiplied by ``gamma`` at each iteration in ``milestones`` (e.g. Mask R-CNN's
    ``[60000, 80000]`` of 90k), with linear warmup.

    Raises:
        ValueError: milestones not increasing or outside (0, max_iters].
    """
    ms = list(milestones)
    if ms != sorted(ms) or any(not 0 < m <= max_iters for m in ms):
        raise ValueError(f"scheduler.milestones must be increasing iterations in (0, {max_iters}], got {ms}")

    def decay(it: int, base: float, floor: float) -> float:
        return base * gamma ** sum(it >= m for m in ms)

    return _lambda(optimizer, decay, 0.0, warmup_iters, warmup_ratio)


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
    return _lambda(optimizer, lambda it, base, floor: base, 0.0, warmup_iters, warmup_ratio)
