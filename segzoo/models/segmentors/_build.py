"""Helpers the model builders share: backbone construction with clear errors, auxiliary heads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

from segzoo.models.backbones.base import Backbone
from segzoo.models.heads.fcn_head import FCNHead
from segzoo.registry import BACKBONES

Norm = Literal["bn", "syncbn", "gn"]


def make_backbone(
    name: str,
    *,
    model: str,
    weights: str | None = None,
    output_stride: int | None = None,
    multi_grid: Sequence[int] | None = None,
    **extra,
) -> Backbone:
    """Build backbone ``name`` for model ``model``, passing only what was asked for.

    Raises:
        RegistryError: unknown backbone (with close matches).
        ValueError: ``output_stride`` or ``multi_grid`` asked of a backbone without that option
            (e.g. VGG-16 for DeepLab), naming the backbones that have it.
    """
    params = BACKBONES.config_params(name)
    kwargs = dict(extra)
    if weights is not None:
        kwargs["weights"] = weights
    for key, value in (("output_stride", output_stride), ("multi_grid", multi_grid)):
        if value is None:
            continue
        if params is not None and key not in params:
            if key == "output_stride" and value == 32:
                continue
            able = [n for n in BACKBONES.names() if key in (BACKBONES.config_params(n) or {})]
            raise ValueError(
                f"{model}: backbone {name!r} has no {key} option (asked for {value}); use one of "
                f"{', '.join(able)} or a timm backbone ('tu-<name>')"
            )
        kwargs[key] = tuple(value) if key == "multi_grid" else value
    return BACKBONES.build(name, **kwargs)


def stride_index(backbone: Backbone, stride: int, *, model: str, what: str) -> int:
    """Index of the first backbone feature at ``stride`` (e.g. v3+'s stride-4 low-level feature).

    Raises:
        ValueError: the backbone has no feature at that stride.
    """
    for i, s in enumerate(backbone.out_strides):
        if s == stride:
            return i
    raise ValueError(f"{model}: the {what} needs a stride-{stride} backbone feature; "
                     f"{type(backbone).__name__} has strides {tuple(backbone.out_strides)}")


def aux_fcn_head(backbone: Backbone, num_classes: int, *, norm: str | None = "bn",
                 in_index: int = -2) -> nn.Module:
    """The auxiliary FCN head on the second-deepest feature (ResNet layer3, "res4"), as PSPNet's
    deep supervision and torchvision's ``aux_classifier``: 3x3 conv C -> C/4 + norm + ReLU,
    dropout 0.1, 1x1 -> K.

    Raises:
        ValueError: a backbone with a single feature level.
    """
    if len(backbone.out_channels) < 2:
        raise ValueError("an auxiliary head needs a backbone with at least two feature levels")
    return FCNHead(backbone.out_channels[in_index], num_classes, norm=norm, in_index=in_index)
