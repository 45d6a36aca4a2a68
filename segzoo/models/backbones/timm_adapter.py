"""Any timm model as a backbone: ``timm:<name>`` or ``tu-<name>`` (smp's spelling).

``BACKBONES.get("tu-resnet18")`` / ``build_backbone("timm:efficientnet_b0", output_stride=16)``
create ``timm.create_model(name, features_only=True, pretrained=False)``: the feature maps of
each reduction stage, with channels and strides from timm's ``feature_info``. ``output_stride``
(8 or 16) is handed to timm where the model supports dilation (ResNets, EfficientNets, aligned
Xception, ...); for others timm raises and we report it. Older timm lets some models take
``output_stride`` and ignore it (Swin on timm 0.9) or reports wrong strides in ``feature_info``
(MetaFormers on timm 0.9): the first is refused when the backbone is built, the second on the
first forward whose maps are large enough to tell (eager, or while torch.compile traces the
model with static shapes), since the decoder was built for strides the maps do not have.

The aligned Xception of DeepLab v3+ is registered as ``xception65`` / ``xception71``: timm's
implementation of the modified aligned Xception (Chen et al., ECCV 2018, sec. 3.2: strided
separable convs instead of max-pooling, BN + ReLU after every depthwise conv).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from segzoo.errors import WeightsError
from segzoo.models.backbones.base import Backbone
from segzoo.models.weights import load_state_dict, load_weights
from segzoo.registry import BACKBONES, close_matches

log = logging.getLogger(__name__)


#: ``timm.create_model`` arguments the backbone sets itself (not through ``timm_kwargs``)
_SET_HERE = frozenset({"features_only", "pretrained", "output_stride", "out_indices"})


class TimmBackbone(Backbone):
    """A timm model with ``features_only=True``.

    Output: one map per timm feature stage (usually 5, strides (2, 4, 8, 16, 32), with
    ``output_stride`` capping the deeper ones), (B, out_channels[i], ~H / out_strides[i], ...).
    Models whose timm features are channels-last (B, H, W, C), e.g. Swin, are permuted to
    (B, C, H, W) like every other backbone.

    Args:
        model_name: a timm model name (``timm.list_models()``).
        output_stride: 8, 16 or 32 (32 leaves the model as it is).
        out_indices: which feature stages to return (default: all of them).
        weights: path or URL of weights keyed like the full timm model (``timm`` checkpoints:
            classifier keys are skipped) or like this backbone's own ``state_dict``. timm's
            checkpoint filters (e.g. position-embedding resizing) are not applied.
        timm_kwargs: more keyword arguments of ``timm.create_model`` (as smp's ``tu-`` encoders
            take), e.g. ``{"img_size": 512}`` for a Swin or ViT trained on 512 px crops, or
            ``{"dynamic_img_size": True}`` for a ViT on any size (timm >= 1.0).

    Raises:
        ValueError: an unknown model, a model whose feature maps timm cannot return
            (``features_only``: ViT and MLP-Mixer models need timm >= 1.0.3), an
            ``output_stride`` or ``timm_kwargs`` key the model does not take (or takes and
            ignores: its deepest map stays above ``output_stride``), or a ``timm_kwargs`` key
            that this class sets itself; in ``forward``, maps whose sizes contradict
            ``out_strides`` (see :func:`check_strides`).
        WeightsError: weights that do not fit (missing keys or shape mismatches listed).
    """

    def __init__(
        self,
        model_name: str,
        *,
        output_stride: int = 32,
        out_indices: Sequence[int] | None = None,
        weights: str | None = None,
        timm_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        import timm  # imported on first use: ~1 s that `import segzoo` need not pay

        if not timm.is_model(model_name):
            raise ValueError(f"timm has no model {model_name!r}{_hint(model_name)}")
        own = sorted(set(timm_kwargs or {}) & _SET_HERE)
        if own:
            raise ValueError(f"timm_kwargs may not set {own}: the backbone sets them (use its "
                             "output_stride / out_indices / weights arguments)")
        # the arguments a model may refuse (named in the error), then those every model takes
        extra = ({"output_stride": output_stride} if output_stride != 32 else {}) | dict(timm_kwargs or {})
        kwargs = {"features_only": True, "pretrained": False, **extra}
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        try:
            self.model = timm.create_model(model_name, **kwargs)
        except RuntimeError as exc:
            if "features_only" not in str(exc):
                raise
            raise ValueError(f"timm {timm.__version__} cannot return the feature maps of {model_name!r} "
                             f"({exc}); timm >= 1.0.3 can for ViT and MLP-Mixer models (pip install -U "
                             "timm), or choose a convolutional backbone") from exc
        except (TypeError, AssertionError, ValueError, NotImplementedError) as exc:
            if not extra:
                raise
            given = ", ".join(f"{k}={v!r}" for k, v in extra.items())
            raise ValueError(f"timm model {model_name!r} does not support {given} ({exc}); "
                             + ("use output_stride=32" if output_stride != 32 else "see the model's "
                                "arguments in timm")) from exc
        info = self.model.feature_info
        reductions = tuple(info.reduction())  # timm reports dilated stages' strides (checked in forward)
        if output_stride != 32 and max(reductions) > output_stride:
            raise ValueError(f"timm {timm.__version__} model {model_name!r} took output_stride={output_stride} "
                             f"but does not dilate: its feature strides stay {reductions}; use "
                             "output_stride=32 (timm >= 1.0 refuses the argument for such models)")
        self.model_name = model_name
        self.output_stride = output_stride
        self.out_channels = tuple(info.channels())
        self.out_strides = reductions
        self._strides_checked = False
        self.channels_last_features = getattr(self.model, "output_fmt", "NCHW") == "NHWC"
        if weights is not None:
            self.load_timm_weights(weights)

    def load_timm_weights(self, source: str) -> None:
        """Load a full-model timm state dict (or one of this backbone) with key checking."""
        state = load_state_dict(source)
        own = self.model.state_dict()
        if not all(k in state for k in own if not k.endswith("num_batches_tracked")):
            state = _to_feature_keys(state, own)
        load_weights(self.model, state, source=str(source))

    def forward(self, images: Tensor) -> list[Tensor]:
        feats = list(self.model(images))
        if self.channels_last_features:  # (B, H, W, C) -> (B, C, H, W)
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        if torch.compiler.is_compiling():
            # checked while Dynamo traces (once per compilation, nothing in the graph); the flag
            # is neither read nor set here: a guard on it would recompile the model when an
            # eager forward (e.g. an evaluation of the same module) sets it
            self._check_strides(images, feats)
        elif not self._strides_checked and not torch.jit.is_tracing():
            self._strides_checked = self._check_strides(images, feats)
        return feats

    def _check_strides(self, images: Tensor, feats: Sequence[Tensor]) -> bool:
        """:func:`check_strides` on plain int sizes (eager, or static shapes under
        torch.compile / export). Symbolic sizes (dynamic shapes) are not compared, which would
        add guards or break the graph: they count as not judged (False)."""
        sizes = [tuple(images.shape[-2:])] + [tuple(f.shape[-2:]) for f in feats]
        if not all(isinstance(n, int) for s in sizes for n in s):
            return False
        return check_strides(sizes, (1, *self.out_strides), f"timm model {self.model_name!r}")


def check_strides(sizes: Sequence[tuple[int, int]], strides: Sequence[int], what: str) -> bool:
    """Check feature-map sizes against their declared strides, pair by consecutive pair.

    Args:
        sizes: (H, W) of the input, then of each map.
        strides: the matching strides, 1 for the input (non-decreasing ints).
        what: the model, for the error message.

    Returns:
        True when every pair was large enough to judge (the earlier side >= 8 px), so later
        inputs need no check; False when some pair was too small to tell.

    Raises:
        ValueError: a pair whose size ratio is 1.7x or more off the ratio of its strides (a
            stride-2 step where 1 was declared, or the reverse). Size ratios of padded or
            'valid' convolutions (e.g. 9 -> 5 or 299 -> 149 for a stride 2) stay inside it.
    """
    judged = True
    for i in range(1, len(sizes)):
        side = max(range(2), key=lambda d: sizes[i - 1][d])  # the longer side is the sharper test
        before, after = sizes[i - 1][side], sizes[i][side]
        if before < 8:
            judged = False
            continue
        off = (before / max(after, 1)) / (strides[i] / strides[i - 1])
        if not 1 / 1.7 < off < 1.7:
            actual = [round(sizes[0][side] / max(s[side], 1), 1) for s in sizes[1:]]
            raise ValueError(f"{what}: its feature maps are at strides ~{actual} of the input, but "
                             f"feature_info says {tuple(strides[1:])}, which the decoder was built for "
                             "(older timm misreports some models: pip install -U timm, or choose "
                             "another backbone)")
    return judged


def _norm_key(key: str) -> str:
    key = key.removeprefix("model.")
    return key.replace("_", ".")


def _to_feature_keys(state: dict[str, Tensor], own: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename full-model keys (``stem.0.conv.weight``) to timm's feature-wrapper names
    (``stem_0.conv.weight``): the wrappers only flatten module paths with ``_``."""
    by_norm: dict[str, str] = {}
    for k in state:
        by_norm.setdefault(_norm_key(k), k)
    out = {}
    used = set()
    for k in own:
        src = by_norm.get(_norm_key(k))
        if src is not None:
            out[k] = state[src]
            used.add(src)
    out.update({k: v for k, v in state.items() if k not in used and k not in out})
    if not out:
        raise WeightsError("weights share no keys with the timm model")
    return out


def _hint(name: str) -> str:
    hits = _suggest(name)
    return f"; did you mean {' or '.join(repr(h) for h in hits)}?" if hits else ""


def timm_backbone(
    model_name: str,
    /,
    *,
    weights: str | None = None,
    output_stride: Literal[8, 16, 32] = 32,
    out_indices: tuple[int, ...] | None = None,
    timm_kwargs: dict[str, Any] | None = None,
) -> TimmBackbone:
    """Builder behind the ``timm:<name>`` and ``tu-<name>`` backbone names (see :class:`TimmBackbone`)."""
    return TimmBackbone(model_name, output_stride=output_stride, out_indices=out_indices, weights=weights,
                        timm_kwargs=timm_kwargs)


def _suggest(name: str) -> list[str]:
    import timm

    return close_matches(name, timm.list_models(), n=3)


def _known(name: str) -> bool:
    import timm

    return timm.is_model(name)


for _prefix in ("timm:", "tu-"):
    BACKBONES.register_prefix(_prefix, timm_backbone, known=_known, suggest=_suggest,
                              family="any timm model, features_only",
                              paper="timm (Wightman, pytorch-image-models)")

_XCEPTION = "Chen et al., DeepLab v3+ (aligned Xception), ECCV 2018; timm implementation"


@BACKBONES.register("xception65", paper=_XCEPTION)
def xception65(*, weights: str | None = None, output_stride: Literal[8, 16, 32] = 32) -> TimmBackbone:
    """Modified aligned Xception-65 (DeepLab v3+ sec. 3.2), timm's ``xception65``; 5 maps with
    channels (128, 256, 728, 1024, 2048), strides (2, 4, 8, 16, 32) capped at ``output_stride``."""
    return TimmBackbone("xception65", output_stride=output_stride, weights=weights)


@BACKBONES.register("xception71", paper=_XCEPTION)
def xception71(*, weights: str | None = None, output_stride: Literal[8, 16, 32] = 32) -> TimmBackbone:
    """Modified aligned Xception-71 (timm's ``xception71``; deeper entry flow than -65)."""
    return TimmBackbone("xception71", output_stride=output_stride, weights=weights)


