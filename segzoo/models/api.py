"""The one-line model API: ``segzoo.build_model("fcn8s", num_classes=11)``."""

from __future__ import annotations

from typing import Any

from torch import nn

from segzoo.registry import BACKBONES, MODELS


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, sorted; ``task="semantic"`` or ``"instance"`` filters them."""
    return MODELS.names(task=task) if task else MODELS.names()


def list_backbones() -> list[str]:
    """Registered backbone names, sorted."""
    return BACKBONES.names()


def build_model(name: str, *, num_classes: int, backbone: str | dict[str, Any] | None = None,
                **kwargs: Any) -> nn.Module:
    """Build a registered model as a plain ``torch.nn.Module`` (no engine needed).

    ``build_model("encoder_decoder", num_classes=K, backbone={"name": "resnet18"},
    decode_head={"name": "psp_head"}, auxiliary_head={"name": "fcn_head", "in_index": -2})``
    composes a model from registered parts (docs/models.md, "Compose your own").

    Args:
        name: a registered model name (``segzoo.list_models()``), e.g. ``"fcn8s"``.
        num_classes: number of output classes.
        backbone: a registered backbone name (or, for ``encoder_decoder``, ``{"name": ...,
            **options}``); ``None`` keeps the model's default.
        **kwargs: further keyword arguments of the model's builder (see its docstring).

    Raises:
        RegistryError: unknown model name (the message lists close matches).
        TypeError: a keyword the builder does not take.
    """
    if backbone is not None:
        kwargs["backbone"] = backbone
    return MODELS.build(name, num_classes=num_classes, **kwargs)
