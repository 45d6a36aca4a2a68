"""Task adapters: how the one engine trains and scores a model of each kind.

A model declares its kind with ``model.task``: ``"semantic"`` models follow the contract of
:mod:`segzoo.models.segmentors.encoder_decoder` (training-mode dict of logits, weighted by
``model.loss_weights``); ``"instance"`` models follow torchvision's detection contract
(``model(images, targets)`` -> loss dict; eval: list of per-image dicts) through
:class:`~segzoo.engine.instance_task.InstanceTask`. The trainer only sees this interface:

* ``name``, ``key_metric`` (higher is better), ``metric_names`` (scalars usable as
  ``train.best_metric``);
* ``losses(model, batch, device) -> {term: scalar}`` for one training batch (``model`` may be
  a DDP or compiled wrapper; the loop runs this call under autocast and sums the terms);
* ``predict(model, images) -> labels`` for the overlays.

Evaluation is the same for every task: :func:`segzoo.evaluation.evaluate_checkpoint` dispatches
on ``model.task`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from segzoo.engine.instance_task import InstanceTask
from segzoo.errors import ConfigError
from segzoo.inference.checks import check_input_normalization, check_input_size, image_names
from segzoo.losses import LossSet


class SemanticTask:
    """Training losses and overlay predictions of semantic segmentation models (their evaluation
    is :func:`segzoo.evaluation.evaluate_checkpoint`'s, as for every model).

    Args:
        losses: the configured losses; each is applied to every training output.
        loss_weights: weight per training output (``{"out": 1.0, "aux": 0.4}``).

    Loss terms are named ``loss_<output>`` with one configured loss, and
    ``loss_<output>_<loss name>`` with several.
    """

    name = "semantic"
    key_metric = "mIoU"
    metric_names = ("mIoU", "mean_acc", "pixel_acc", "fwIoU", "mDice", "mBIoU")

    def __init__(self, losses: LossSet, *, loss_weights: dict[str, float]) -> None:
        self.loss = losses
        self.loss_weights = dict(loss_weights)

    def losses(self, model: nn.Module, batch: dict, device: torch.device) -> dict[str, Tensor]:
        """Weighted loss terms of one training batch (see the class docstring)."""
        images = batch["image"].to(device, non_blocking=True)
        target = batch["mask"].to(device, non_blocking=True)
        check_input_size(model, images.shape[-2:], f"training batch of {image_names(batch['meta'])}",
                         slide=True)
        outputs = model(images)
        if isinstance(outputs, Tensor):  # a plain model returning logits in training mode too
            outputs = {"out": outputs}
        single = len(self.loss.losses) == 1
        terms = {}
        for out_name, logits in outputs.items():
            w = self.loss_weights.get(out_name, 1.0)
            for loss_name, value in self.loss(logits, target).items():
                terms[f"loss_{out_name}" if single else f"loss_{out_name}_{loss_name}"] = w * value
        return terms

    @torch.inference_mode()
    def predict(self, model: nn.Module, images: Tensor) -> Tensor:
        """Eval-mode argmax labels (B, H, W) int64 for normalised images (B, 3, H, W)."""
        return model(images).argmax(1)


def resolve_loss_weights(model: nn.Module, overrides: dict[str, float] | None) -> dict[str, float]:
    """``model.loss_weights`` (``{"out": 1.0}`` if absent) updated by ``train.loss_weights``.

    Raises:
        ConfigError: an override for an output the model does not have.
    """
    weights = dict(getattr(model, "loss_weights", {"out": 1.0}))
    for k, v in (overrides or {}).items():
        if k not in weights:
            raise ConfigError(f"'train.loss_weights.{k}': the model has no training output {k!r}; "
                              f"its outputs are {', '.join(weights)}")
        weights[k] = v
    return weights


def build_task(model: nn.Module, losses: LossSet, *, num_classes: int, ignore_index: int,
               class_names: Sequence[str], loss_weights: dict[str, float] | None = None,
               eval_cfg=None, thing_classes: Sequence[int] | None = None,
               data_mean: Sequence[float] | None = None, data_std: Sequence[float] | None = None):
    """The task adapter for ``model.task`` (semantic by default); ``loss_weights`` override the
    model's per-output weights; ``eval_cfg`` is ``cfg.eval``.

    Instance models get an :class:`~segzoo.engine.instance_task.InstanceTask` (``losses``
    is not used: their losses are the model's own);
    ``data_mean``/``data_std`` are checked against models that normalise their input themselves.

    Raises:
        ConfigError: a loss weight for an output the model does not have; normalised images for a
            model that normalises them itself.
        NotImplementedError: an unknown ``model.task``.
    """
    kind = getattr(model, "task", "semantic")
    if kind == "instance":
        if data_mean is not None and data_std is not None:
            check_input_normalization(model, data_mean, data_std)
        return InstanceTask(loss_weights=resolve_loss_weights(model, loss_weights), num_classes=num_classes,
                            ignore_index=ignore_index, class_names=class_names, thing_classes=thing_classes,
                            eval_cfg=eval_cfg,
                            key_metric=getattr(model, "key_metric", None))
    if kind != "semantic":
        raise NotImplementedError(f"no engine task for {kind!r} models yet")
    return SemanticTask(losses, loss_weights=resolve_loss_weights(model, loss_weights))
