"""Task adapters: how the one engine trains and scores a model of each kind.

A model declares its kind with ``model.task``: ``"semantic"`` models follow the contract of
:mod:`segzoo.models.segmentors.encoder_decoder` (training-mode dict of logits, weighted by
``model.loss_weights``); ``"instance"`` models will follow torchvision's detection contract
(``model(images, targets)`` -> loss dict). The trainer only sees ``losses(...)`` and
``evaluate(...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from segzoo.engine.evaluator import evaluate_semantic, predict_labels


class SemanticTask:
    """Training losses and evaluation for semantic segmentation models.

    Args:
        loss: ``loss(logits (B, K, H, W), target (B, H, W)) -> scalar``.
        num_classes, ignore_index, class_names: of the data.
        key_metric: the metric that decides the best checkpoint (higher is better).
    """

    name = "semantic"
    key_metric = "mIoU"

    def __init__(self, loss: nn.Module, *, num_classes: int, ignore_index: int,
                 class_names: Sequence[str], eval_cfg=None) -> None:
        self.loss = loss
        self.eval_cfg = eval_cfg  # issue 6: cfg.eval (inference mode, TTA, cross-task)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names)

    def losses(self, model: nn.Module, batch: dict, device: torch.device) -> dict[str, Tensor]:
        """Weighted loss terms ``{"loss_out": ..., "loss_aux": ...}`` of one training batch."""
        images = batch["image"].to(device, non_blocking=True)
        target = batch["mask"].to(device, non_blocking=True)
        outputs = model(images)
        if isinstance(outputs, Tensor):  # a plain model returning logits in training mode too
            outputs = {"out": outputs}
        weights = getattr(model, "loss_weights", {"out": 1.0})
        return {f"loss_{k}": weights.get(k, 1.0) * self.loss(v, target) for k, v in outputs.items()}

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device,
                 progress: bool = True) -> dict:
        return evaluate_semantic(
            model, loader, num_classes=self.num_classes, ignore_index=self.ignore_index,
            class_names=self.class_names, device=device, progress=progress, eval_cfg=self.eval_cfg,
        )

    def predict(self, model: nn.Module, images: Tensor) -> Tensor:
        """Labels (B, H, W) int64 for normalised images (B, 3, H, W)."""
        return predict_labels(model, images)


def build_task(model: nn.Module, loss: nn.Module, *, num_classes: int, ignore_index: int,
               class_names: Sequence[str], eval_cfg=None) -> SemanticTask:
    """The task adapter for ``model.task`` (semantic by default)."""
    kind = getattr(model, "task", "semantic")
    if kind != "semantic":
        raise NotImplementedError(f"no engine task for {kind!r} models yet")
    return SemanticTask(loss, num_classes=num_classes, ignore_index=ignore_index, class_names=class_names,
                        eval_cfg=eval_cfg)
