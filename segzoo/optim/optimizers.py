"""Optimizers with parameter groups, registered for configs (schedules: :mod:`.schedulers`).

An optimizer builder takes the model positionally (the engine supplies it) and config keys as
keywords. Parameters are split into groups:

* ``backbone_lr_mult``: parameters under ``model.backbone`` train at ``lr * backbone_lr_mult``
  (e.g. 0.1 for a pretrained backbone under a fresh head);
* ``norm_weight_decay``: weight decay of normalisation layers' weights and biases (BatchNorm,
  SyncBatchNorm, GroupNorm, LayerNorm, InstanceNorm); ``bias_weight_decay``: of other biases.
  Both default to 0 (no decay), as torchvision's reference recipes and detectron2 allow; ``null``
  means "same as weight_decay".

Each group records ``lr_mult`` and ``name`` (``backbone``/``head`` x ``decay``/``norm``/``bias``);
schedules scale every group's own initial lr. Frozen parameters (``requires_grad=False``) are left
out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from segzoo.optim import schedulers  # noqa: F401  (registers the schedules)
from segzoo.registry import OPTIMIZERS

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(
    model: nn.Module | Iterable,
    *,
    lr: float,
    weight_decay: float,
    backbone_lr_mult: float = 1.0,
    norm_weight_decay: float | None = 0.0,
    bias_weight_decay: float | None = 0.0,
) -> list[dict[str, Any]]:
    """Parameter groups of ``model`` (see the module docstring); a plain iterable of parameters
    gives one group. Empty groups are dropped."""
    if not isinstance(model, nn.Module):
        return [{"params": [p for p in model if p.requires_grad], "lr": lr, "weight_decay": weight_decay,
                 "lr_mult": 1.0, "name": "all"}]
    norm_wd = weight_decay if norm_weight_decay is None else norm_weight_decay
    bias_wd = weight_decay if bias_weight_decay is None else bias_weight_decay
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{module_name}.{param_name}" if module_name else param_name
            part = "backbone" if full.startswith("backbone.") else "head"
            if isinstance(module, NORM_LAYERS):
                kind, wd = "norm", norm_wd
            elif param_name == "bias":
                kind, wd = "bias", bias_wd
            else:
                kind, wd = "decay", weight_decay
            mult = backbone_lr_mult if part == "backbone" else 1.0
            group = groups.setdefault((part, kind), {"params": [], "lr": lr * mult, "weight_decay": wd,
                                                     "lr_mult": mult, "name": f"{part}.{kind}"})
            group["params"].append(p)
    return list(groups.values())


@OPTIMIZERS.register("sgd")
def sgd(
    model: nn.Module | Iterable,
    /,
    *,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = False,
    backbone_lr_mult: float = 1.0,
    norm_weight_decay: float | None = 0.0,
    bias_weight_decay: float | None = 0.0,
) -> torch.optim.Optimizer:
    """SGD with momentum (FCN: lr 1e-4 unnormalised loss / 1e-2 mean loss, momentum 0.9;
    DeepLab: 0.9 momentum, 5e-4 decay). Parameter-group keys: see the module docstring."""
    groups = param_groups(model, lr=lr, weight_decay=weight_decay, backbone_lr_mult=backbone_lr_mult,
                          norm_weight_decay=norm_weight_decay, bias_weight_decay=bias_weight_decay)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


@OPTIMIZERS.register("adamw")
def adamw(
    model: nn.Module | Iterable,
    /,
    *,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    backbone_lr_mult: float = 1.0,
    norm_weight_decay: float | None = 0.0,
    bias_weight_decay: float | None = 0.0,
) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay, Loshchilov & Hutter 2019). Parameter-group keys: see the
    module docstring."""
    groups = param_groups(model, lr=lr, weight_decay=weight_decay, backbone_lr_mult=backbone_lr_mult,
                          norm_weight_decay=norm_weight_decay, bias_weight_decay=bias_weight_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The lr of the first group at full rate (``lr_mult`` 1), else of the first group."""
    groups = optimizer.param_groups
    return next((g["lr"] for g in groups if g.get("lr_mult", 1.0) == 1.0), groups[0]["lr"])
