"""Loading a trained model: config + checkpoint -> an eval-mode model on a device.

One function for every consumer of trained weights (``segzoo eval``, ``predict``, ``export``,
``compare``, ``bench`` and other projects)::

    from segzoo.checkpoint import load_trained_model

    model, meta = load_trained_model(load_config("run/config.yaml"), "run/checkpoints/best.pt", "cuda")
"""

from __future__ import annotations

import os

import torch
from torch import nn

from segzoo import builders
from segzoo.checkpoint.compat import check_finite_weights, check_model_fits, load_model_weights
from segzoo.checkpoint.io import load_checkpoint
from segzoo.config import Config
from segzoo.data.palette import default_palette
from segzoo.errors import DataError
from segzoo.inference.checks import check_input_normalization, model_task


def load_trained_model(cfg: Config, checkpoint: str | os.PathLike,
                       device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Build ``cfg.model`` and load a checkpoint's weights; returns (eval-mode model, meta).

    ``meta`` holds ``num_classes``, ``class_names`` and ``palette`` from the checkpoint, or, for a
    bare state dict, from the config's val (else train) dataset, else ``model.num_classes``. A
    checkpoint of a run with ``train.ema`` gives its EMA weights (those the run evaluated);
    ``meta["weights"]`` says which (``"ema"`` or ``"model"``), ``meta["iteration"]`` the run's
    optimizer steps (0 for a bare state dict), ``meta["inference_changes"]`` what ``cfg`` builds
    differently from the trained model: only ``output_stride`` / ``atrous_rates`` may differ (e.g.
    ``--set model.output_stride=8`` on a model trained at 16, as DeepLab v3 evaluates); empty when
    built as trained. ``cfg`` is not modified.

    Raises:
        CheckpointError: the file is missing or unreadable, was trained as another model, does not
            fit the built model, or holds non-finite weights (each message says what to use).
            A different ``output_stride`` whose weights do not fit (a backbone without dilation
            support) fails here too, naming the mismatched parameters.
        DataError: the number of classes cannot be told (bare state dict, no dataset, no
            ``model.num_classes``).
        ConfigError: normalised input configured for a model that normalises its input itself.
    """
    state = load_checkpoint(checkpoint)
    meta = dict(state.get("meta") or {})
    if "num_classes" not in meta:
        split = cfg.data.val or cfg.data.train
        if split is None and "num_classes" not in cfg.model.kwargs:
            raise DataError(f"cannot tell the number of classes of {checkpoint}: the checkpoint has no "
                            "meta and the config no dataset or model.num_classes")
        if split is not None:
            ds = builders.dataset_from_split(cfg, split)
            meta.update(num_classes=ds.num_classes, class_names=list(ds.class_names),
                        palette=ds.colors())
        else:
            meta["num_classes"] = cfg.model.kwargs["num_classes"]
    meta.setdefault("class_names", [str(i) for i in range(meta["num_classes"])])
    meta.setdefault("palette", default_palette(meta["num_classes"]))
    changes = check_model_fits(state, cfg, checkpoint, inference=True)
    model = builders.model_from_config(cfg, meta["num_classes"])
    if model_task(model) == "instance":  # a model that normalises its 0..1 input itself
        check_input_normalization(model, cfg.data.mean, cfg.data.std)
    ema = state.get("ema")
    weights = ema["module"] if ema else state["model"]
    check_finite_weights(weights, checkpoint)
    load_model_weights(model, weights, checkpoint)
    meta["weights"] = "ema" if ema else "model"
    meta["iteration"] = int(state.get("iteration", 0))
    meta["inference_changes"] = changes
    return model.to(device).eval(), meta
