"""Does a checkpoint fit a config? Checked before anything is built, said in one line.

A checkpoint records the resolved config of its run (see :mod:`segzoo.checkpoint`). Loading
it with another config (another architecture, backbone or width, another number of classes,
resuming with another optimizer) would otherwise fail deep inside PyTorch with a dump of state-dict
keys, or, for the number of classes, only after a whole evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segzoo.config import Config
from segzoo.config.schema import config_diff
from segzoo.config.validate import ALIASES, MODEL_PARTS
from segzoo.errors import CheckpointError

# model options that do not change the trained architecture (pretrained-weight sources)
NOT_ARCHITECTURE = {"weights", "weights_backbone", "backbone_weights", "pretrained"}
# options that change only dilations, not parameter shapes: a model trained at output_stride 16
# may be evaluated at 8 (DeepLab v3, Chen et al. 2017, its inference strategy); allowed when loading
# for inference, refused when resuming training
INFERENCE_ONLY = {"output_stride", "atrous_rates"}


def _model_diff(saved: dict, current: dict) -> list[str]:
    # a run recorded under an old key spelling (aux_head) is the same model as the new spelling
    renames = ALIASES.get("model", {})
    saved = {renames.get(k, k) if renames.get(k, k) not in saved else k: v for k, v in saved.items()}
    saved = {k: v for k, v in saved.items() if k not in NOT_ARCHITECTURE}
    current = {k: v for k, v in current.items() if k not in NOT_ARCHITECTURE}
    if "num_classes" not in current:  # filled in from the dataset later
        saved.pop("num_classes", None)
    # a part named by a string is the same as the mapping with that name alone (resnet18 = {name: resnet18})
    saved, current = ({k: {"name": v} if k in MODEL_PARTS and isinstance(v, str) else v for k, v in d.items()}
                      for d in (saved, current))
    return [d for d in config_diff(saved, current, "model.")
            if d.split(":")[0].rsplit(".", 1)[-1] not in NOT_ARCHITECTURE]


def check_model_fits(state: dict[str, Any], cfg: Config, path: str | os.PathLike,
                     *, run_config: str | os.PathLike | None = None,
                     inference: bool = False) -> list[str]:
    """Raise :class:`CheckpointError` if the checkpoint's recorded ``model`` config differs from
    ``cfg.model`` (pretrained-weight paths aside). Checkpoints without a recorded config (bare
    state dicts) pass; their weights are checked by :func:`load_model_weights`.

    With ``inference=True`` a different ``output_stride`` / ``atrous_rates`` is allowed (same
    weights, other dilations); the returned list names those changes (``"model.output_stride:
    16 -> 8"``), empty when the model is built as trained.
    """
    saved = (state.get("config") or {}).get("model")
    if not isinstance(saved, dict):
        return []
    diff = _model_diff(saved, cfg.model.to_dict())
    allowed = [d for d in diff if inference
               and d.split(":")[0].rsplit(".", 1)[-1] in INFERENCE_ONLY]
    diff = [d for d in diff if d not in allowed]
    if diff:
        run_config = run_config or _run_config(path)
        raise CheckpointError(
            f"checkpoint {path} was trained as another model than this config builds ("
            + "; ".join(diff[:4]) + (f"; +{len(diff) - 4} more" if len(diff) > 4 else "")
            + f"); use the run's own config{f' ({run_config})' if run_config else ''} or a "
            "checkpoint of this config")
    return allowed


def check_resume_fits(state: dict[str, Any], cfg: Config, path: str | os.PathLike) -> None:
    """:func:`check_model_fits`, plus the optimizer: resuming AdamW from an SGD run's state
    cannot work (its moments are missing).

    Raises:
        CheckpointError: naming what differs and the run's own config.
    """
    run_config = Path(path).parent.parent / "config.yaml"
    check_model_fits(state, cfg, path, run_config=run_config)
    saved = ((state.get("config") or {}).get("optimizer") or {}).get("name")
    if saved is not None and saved != cfg.optimizer.name:
        raise CheckpointError(
            f"cannot resume {path}: the run was trained with optimizer {saved!r}, this config asks "
            f"for {cfg.optimizer.name!r}; resume with the run's config ({run_config}) or start a "
            "new --work-dir")


def check_num_classes(meta: dict[str, Any], num_classes: int, path: str | os.PathLike, what: str) -> None:
    """Raise :class:`CheckpointError` if the checkpoint predicts another number of classes than
    ``what`` (e.g. "the val dataset") has."""
    have = meta.get("num_classes")
    if have is not None and have != num_classes:
        names = meta.get("class_names") or []
        shown = f" ({', '.join(map(str, names[:6]))}{', ...' if len(names) > 6 else ''})" if names else ""
        raise CheckpointError(
            f"checkpoint {path} predicts {have} classes{shown}, {what} has {num_classes}; "
            "evaluate it on the data it was trained for, or train on this one")


def load_model_weights(model: nn.Module, weights: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """``model.load_state_dict(weights)`` with a one-line :class:`CheckpointError` (counts of
    missing / unexpected keys and of shape mismatches, with the first of each) instead of
    PyTorch's full key dump."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(v)} {what} (first: {v[0]})" for what, v in
                 (("missing keys", missing), ("unexpected keys", unexpected),
                  ("shape mismatches, checkpoint vs model", shapes)) if v]
        raise CheckpointError(
            f"checkpoint {path} does not fit the model this config builds: " + "; ".join(parts)
            + "; use the config the checkpoint was trained with")
    model.load_state_dict(weights)


def _run_config(path: str | os.PathLike) -> Path | None:
    candidate = Path(path).parent.parent / "config.yaml"
    return candidate if candidate.is_file() else None


def check_finite_weights(weights: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` if any floating-point weight is NaN or inf (such a model
    predicts nothing meaningful; its argmax would score as class 0 everywhere)."""
    bad = [k for k, v in weights.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise CheckpointError(
            f"checkpoint {path} has non-finite (NaN/inf) weights in {len(bad)} tensor(s) (first: "
            f"{', '.join(bad[:3])}); use an earlier checkpoint of the run (best.pt, iter_*.pt)")

