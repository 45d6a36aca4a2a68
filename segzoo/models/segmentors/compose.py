"""Composition of semantic models from parts named in config: ``backbone`` + optional ``neck`` +
``decode_head`` + optional ``auxiliary_head``, each built from its registry by name with its own
keyword arguments (mmsegmentation's ``EncoderDecoder`` config)::

    model:
      name: encoder_decoder
      backbone: {name: mobilenet_v2, output_stride: 16}
      decode_head: {name: psp_head, channels: 512, bins: [1, 2, 3, 6]}
      auxiliary_head: {name: fcn_head, in_index: -2, loss_weight: 0.4}

Every named architecture (``fcn8s``, ``pspnet``, ...) is a preset over :func:`compose`: one code
path. Heads wire themselves to the backbone's (or neck's) ``out_channels`` / ``out_strides``
(:mod:`segzoo.models.heads.wiring`); a head that cannot decode the backbone raises a
``ValueError`` at build time naming both and listing the backbones that fit.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from segzoo.models.backbones.base import Backbone
from segzoo.models.heads.describe import fitting_backbones
from segzoo.models.heads.unet_head import UNetHead
from segzoo.models.heads.wiring import FeatureInfo
from segzoo.models.segmentors.encoder_decoder import EncoderDecoder
from segzoo.models.segmentors.unet_segmentor import UNet
from segzoo.registry import BACKBONES, HEADS, MODELS, NECKS

Norm = Literal["bn", "syncbn", "gn"]
Spec = str | dict[str, Any]

# default loss weight of an auxiliary head (PSPNet sec. 3.3, mmsegmentation)
AUX_LOSS_WEIGHT = 0.4


def parse_spec(spec: Any, *, key: str, model: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``{"name": ..., **options}`` -> ``(name, options)``.

    Raises:
        ValueError: anything else (names ``key`` and what to write).
    """
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return spec["name"], {k: v for k, v in spec.items() if k != "name"}
    raise ValueError(f"{model}: {key} must be a registered name or a mapping with a 'name' key "
                     f"(e.g. {{name: resnet18}}), got {spec!r}")


def preset_backbone(backbone: Spec, *, model: str, **fixed: Any) -> dict[str, Any]:
    """The backbone spec of a named model (``pspnet``, ``deeplabv3plus``, ...): ``backbone`` as a
    registered name or as ``{name: ..., **options}`` for the options the model leaves to the
    backbone (a ``tu-`` backbone's ``timm_kwargs``, ``weights``, ...), with the options the model
    sets from its own arguments (``fixed``, e.g. ``output_stride``) added, as mmsegmentation's
    ``backbone=dict(type=..., ...)``.

    Raises:
        ValueError: the mapping sets one of ``fixed`` (the message says to pass it to the model
            instead), or a spec that is neither a name nor a mapping with a ``name``.
    """
    name, options = parse_spec(backbone, key="backbone", model=model)
    clash = sorted(set(options) & set(fixed))
    if clash:
        raise ValueError(f"{model}: backbone option {', '.join(clash)} is {model}'s own argument; "
                         f"pass {clash[0]}=... to {model} instead of in the backbone mapping")
    return {"name": name, **options, **fixed}


def make_backbone(
    name: str,
    *,
    model: str,
    weights: str | None = None,
    output_stride: int | None = None,
    multi_grid: Sequence[int] | None = None,
    **extra,
) -> Backbone:
    """Build backbone ``name`` for model ``model``, passing only what was asked for
    (``output_stride=32`` is accepted from backbones without that option, which are at 32).

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


def build_backbone(spec: Spec, *, model: str, weights: str | None = None) -> tuple[Backbone, FeatureInfo]:
    """The backbone of ``spec`` (``weights`` from the model's ``weights_backbone``) and its
    :class:`FeatureInfo`.

    Raises:
        ValueError: weights given twice, or see :func:`make_backbone`.
    """
    name, options = parse_spec(spec, key="backbone", model=model)
    options["weights"] = take_weights(options, weights, model=model)
    backbone = make_backbone(name, model=model, **options)
    stride = getattr(backbone, "output_stride", None)
    source = f"backbone {name!r}" + (f" at output_stride {stride}" if stride else "")
    return backbone, FeatureInfo.of(backbone, source)


def take_weights(options: dict[str, Any], weights: str | None, *, model: str) -> str | None:
    """Pop ``weights`` from a backbone's ``options`` and return the one source of backbone
    weights: those or the model's ``weights_backbone`` (``weights``), or ``None``.

    Raises:
        ValueError: both given.
    """
    own = options.pop("weights", None)
    if own is not None and weights is not None:
        raise ValueError(f"{model}: backbone weights given twice (weights_backbone and "
                         "backbone.weights); set one")
    return weights if own is None else own


def build_neck(spec: Spec, features: FeatureInfo, *, model: str):
    """The neck of ``spec`` over ``features`` and the :class:`FeatureInfo` it outputs."""
    name, options = parse_spec(spec, key="neck", model=model)
    _check_options(NECKS, name, options, key="neck", model=model)
    neck = NECKS.build(name, features, **options)
    return neck, FeatureInfo.of(neck, f"neck {name!r} over {features.source}")


def build_head(spec: Spec, features: FeatureInfo, num_classes: int, *, key: str, model: str):
    """The head of ``spec`` wired to ``features``, and its ``loss_weight`` option (``None`` if
    not given; only auxiliary heads take one).

    Raises:
        ValueError: the head cannot decode these features (the message names head and backbone
            and lists the registered backbones that fit), or ``loss_weight`` on the decode head.
        TypeError: an option the head does not take (the message lists those it does).
    """
    name, options = parse_spec(spec, key=key, model=model)
    loss_weight = options.pop("loss_weight", None)
    if loss_weight is not None and key == "decode_head":
        raise ValueError(f"{model}: decode_head takes no loss_weight (the main output weighs 1; "
                         "set train.loss_weights to change it)")
    _check_options(HEADS, name, options, key=key, model=model)
    try:
        head = HEADS.build(name, features, num_classes, **options)
    except ValueError as exc:
        if not getattr(exc, "incompatible", False):
            raise
        fits = fitting_backbones(name, **options)
        raise ValueError(f"{model}: {exc}. Registered backbones (at their default options) that "
                         f"{name} decodes with these options: {', '.join(fits) or 'none'}") from None
    return head, loss_weight


def _check_options(registry, name: str, options: dict[str, Any], *, key: str, model: str) -> None:
    params = registry.config_params(name)
    unknown = sorted(set(options) - set(params or options))
    if unknown:
        extra = ", loss_weight" if registry is HEADS and key == "auxiliary_head" else ""
        raise TypeError(f"{model}: {key} {name!r} has no option {', '.join(map(repr, unknown))}; "
                        f"its options: name, {', '.join(params)}{extra}")


def compose(
    *,
    num_classes: int,
    backbone: Spec,
    decode_head: Spec,
    neck: Spec | None = None,
    auxiliary_head: Spec | None = None,
    weights_backbone: str | None = None,
    name: str = "encoder_decoder",
) -> EncoderDecoder:
    """Build backbone, neck, decode head and auxiliary head, in that order, and assemble them.

    Returns a :class:`UNet` (an :class:`EncoderDecoder` with the valid-padding geometry) when the
    decode head is the U-Net decoder, an :class:`EncoderDecoder` otherwise.

    Raises:
        ValueError: a part that does not fit (see :func:`build_head`), or ``padding: valid`` in
            the U-Net decoder without the valid-padded original encoder.
    """
    if num_classes < 1:
        raise ValueError(f"{name}: num_classes must be >= 1, got {num_classes}")
    encoder, features = build_backbone(backbone, model=name, weights=weights_backbone)
    neck_module = None
    if neck is not None:
        neck_module, features = build_neck(neck, features, model=name)
    head, _ = build_head(decode_head, features, num_classes, key="decode_head", model=name)
    aux, aux_weight = None, None
    if auxiliary_head is not None:
        aux, aux_weight = build_head(auxiliary_head, features, num_classes, key="auxiliary_head",
                                     model=name)
    parts = dict(num_classes=num_classes, neck=neck_module, auxiliary_head=aux,
                 aux_loss_weight=AUX_LOSS_WEIGHT if aux_weight is None else float(aux_weight), name=name)
    if isinstance(head, UNetHead):
        if head.padding == "valid" and (getattr(encoder, "padding", "same") != "valid"
                                        or neck is not None or aux is not None):
            raise ValueError(f"{name}: unet_head with padding 'valid' needs the original encoder "
                             "with padding 'valid' (backbone {name: unet_encoder, padding: valid}), "
                             "no neck and no auxiliary head; or use padding 'same'")
        return UNet(encoder, head, padding=head.padding, **parts)
    return EncoderDecoder(encoder, head, **parts)


@MODELS.register("encoder_decoder", task="semantic",
                 paper="composed: backbone + neck + decode_head + auxiliary_head (mmsegmentation's EncoderDecoder)")
def encoder_decoder(
    *,
    num_classes: int,
    backbone: str | dict[str, Any],
    decode_head: str | dict[str, Any],
    neck: str | dict[str, Any] | None = None,
    auxiliary_head: str | dict[str, Any] | None = None,
    weights_backbone: str | None = None,
) -> EncoderDecoder:
    """A semantic model composed from registered parts.

    Args:
        num_classes: K.
        backbone: a registered backbone name (``segzoo list backbones``, ``tu-<timm name>``) or
            ``{name: ..., **options}`` (``output_stride``, ``multi_grid``, ``weights``, ...).
        decode_head: a registered head (``segzoo list heads``) or ``{name: ..., **options}``;
            it reads the backbone's (or neck's) features by stride.
        neck: optional neck between backbone and heads (``{name: fpn, out_channels: 128}``).
        auxiliary_head: optional head used in training only, e.g. ``{name: fcn_head, in_index:
            -2, loss_weight: 0.4}`` (``loss_weight`` default 0.4); adds ``"aux"`` to the training
            outputs.
        weights_backbone: path or URL of backbone weights (or ``backbone.weights``).

    Returns:
        An :class:`EncoderDecoder` (a :class:`UNet` for the U-Net decoder): images (B, 3, H, W)
        -> logits (B, K, H, W); in training ``{"out", "aux"}`` weighted by ``model.loss_weights``.

    Raises:
        RegistryError: an unknown part name (with close matches).
        ValueError: a head that cannot decode the backbone (names both, lists what fits).
        TypeError: an option a part does not take (lists those it does).
    """
    return compose(num_classes=num_classes, backbone=backbone, decode_head=decode_head, neck=neck,
                   auxiliary_head=auxiliary_head, weights_backbone=weights_backbone)


def aux_spec(auxiliary_head: bool | dict[str, Any] | None, *, norm: str | None = "bn",
             loss_weight: float = AUX_LOSS_WEIGHT) -> dict[str, Any] | None:
    """The auxiliary head of a named model: ``True`` is the FCN head on the second-deepest feature
    (ResNet layer3, "res4"; PSPNet's deep supervision, torchvision's ``aux_classifier``: 3x3 conv
    C -> C/4 + norm + ReLU, dropout 0.1, 1x1 -> K) with ``loss_weight``; a mapping is any head
    spec (its ``loss_weight`` default ``loss_weight``); ``False``/``None`` is none."""
    if auxiliary_head is None or auxiliary_head is False:
        return None
    if auxiliary_head is True:
        return {"name": "fcn_head", "in_index": -2, "norm": norm, "loss_weight": loss_weight}
    name, options = parse_spec(auxiliary_head, key="auxiliary_head", model="auxiliary_head")
    return {"name": name, "loss_weight": loss_weight, **options}


def renamed(**old_to_new: str) -> Callable[[Callable], Callable]:
    """Accept old keyword names of a builder (``aux_head`` -> ``auxiliary_head``) with a
    ``DeprecationWarning``; the builder's signature (and so its config keys) shows only the new."""

    def decorator(builder: Callable) -> Callable:
        @functools.wraps(builder)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{builder.__name__}: {old!r} is the old name of {new!r}; "
                                        "give only one")
                    warnings.warn(f"{builder.__name__}: {old!r} is deprecated, use {new!r}",
                                  DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return builder(*args, **kwargs)

        wrapper.__signature__ = inspect.signature(builder)  # type: ignore[attr-defined]
        return wrapper

    return decorator
