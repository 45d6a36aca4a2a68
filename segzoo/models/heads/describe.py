"""Which head fits which backbone: :func:`describe_heads` (shown by ``segzoo list heads``) and
:func:`fitting_backbones` (appended to the build-time error of a head that does not fit).

Nothing is guessed from tables: each registered backbone is built at its default options on the
``meta`` device (no memory, no compute) and each head builder is asked to wire itself to it.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from segzoo.models.heads.wiring import FeatureInfo
from segzoo.registry import BACKBONES, HEADS

# a representative of the timm families (``tu-<name>``): five levels at strides 2 ... 32
TIMM_EXAMPLE = "tu-resnet18"


@functools.cache
def backbone_features(name: str) -> FeatureInfo:
    """The :class:`FeatureInfo` of backbone ``name`` at its default options (built on ``meta``)."""
    with torch.device("meta"):
        backbone = BACKBONES.build(name)
    return FeatureInfo.of(backbone, f"backbone {name!r}")


def check(head: str, features: FeatureInfo, **options: Any) -> str | None:
    """``None`` if head ``head`` with ``options`` can decode ``features``, else the reason.

    Raises:
        ValueError: an error that is not about the pairing (a bad option value).
    """
    with torch.device("meta"):
        try:
            HEADS.build(head, features, 2, **options)
        except ValueError as exc:
            if getattr(exc, "incompatible", False):
                return str(exc)
            raise
    return None


def fitting_backbones(head: str, **options: Any) -> list[str]:
    """Registered backbone names (at their default options) that head ``head`` with ``options``
    can decode, sorted; ``tu-<name>`` is listed when a typical timm model (``tu-resnet18``) fits."""
    names = [n for n in BACKBONES.names() if check(head, backbone_features(n), **options) is None]
    if check(head, backbone_features(TIMM_EXAMPLE), **options) is None:
        names.append("tu-<name>")
    return names


def describe_heads() -> dict[str, dict[str, Any]]:
    """Every registered head: ``{name: {"paper", "reads", "options", "backbones", "refused"}}``.

    ``reads`` says which features the head takes; ``options`` its config keys (besides ``name``
    and, as an auxiliary head, ``loss_weight``); ``backbones`` the registered backbones it decodes
    at their default options (``tu-<name>`` for timm models like ``tu-resnet18``); ``refused``
    maps each other backbone to the build-time error.
    """
    out = {}
    for name in HEADS.names():
        meta = HEADS.entry(name).meta
        refused = {}
        for backbone in [*BACKBONES.names(), TIMM_EXAMPLE]:
            reason = check(name, backbone_features(backbone))
            if reason is not None:
                refused[backbone] = reason
        out[name] = {
            "paper": meta.get("paper", ""),
            "reads": meta.get("reads", ""),
            "options": list(HEADS.config_params(name) or {}),
            "backbones": fitting_backbones(name),
            "refused": refused,
        }
    return out
