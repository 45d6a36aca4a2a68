"""The task adapter of instance models (``model.task == "instance"``: Mask R-CNN), torchvision's
detection contract (see :mod:`segzoo.engine.tasks` for the interface the trainer uses).

* **Training**: ``model(images, targets)`` returns the loss dict (``loss_classifier``,
  ``loss_box_reg``, ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg``), each weighted by
  ``model.loss_weights`` / ``train.loss_weights`` (1 by default). The targets are the batch's
  instances, with **crowd annotations dropped** (detectron2's choice: a crowd region is neither an
  object to find nor background to learn) and **boxes of zero width or height dropped** with a
  warning that counts them (those the pipeline's sanitising step removed after crops included).
* **Evaluation** (by :func:`segzoo.evaluation.evaluate_checkpoint`, as for every model): COCO box
  and mask AP (pycocotools, RLE-encoded predictions; crowd ground truth matched the COCO way),
  plus the semantic row of the masks pasted by descending score; the trainer writes the COCO
  results json to the run folder's ``coco_results.json``. Key metric ``mask_AP``. Keypoint
  models (Keypoint R-CNN) also get ``loss_keypoint`` and keypoint AP (``kp_AP``; their configs set
  ``train.best_metric: kp_AP``); without masks, their semantic row pastes the boxes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from segzoo.metrics.cross_task import instances_to_semantic
from segzoo.metrics.keypoints import boxes_as_masks, target_keypoints


def training_targets(instances: Sequence[dict], device: torch.device | str) -> tuple[list[dict[str, Tensor]], int]:
    """torchvision detection targets from a batch's instance dicts (with ``keypoints`` (N, K, 3)
    when the data has them): crowd annotations and boxes of zero width or height dropped; returns
    (targets, number of degenerate boxes dropped)."""
    targets, dropped = [], 0
    for inst in instances:
        boxes = inst["boxes"].as_subclass(Tensor).to(device, torch.float32).reshape(-1, 4)
        crowd = inst.get("iscrowd")
        keep = torch.ones(len(boxes), dtype=torch.bool, device=device) if crowd is None else \
            crowd.to(device) == 0
        good = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        dropped += int((keep & ~good).sum())
        keep &= good
        target = {"boxes": boxes[keep], "labels": inst["labels"].to(device, torch.int64)[keep],
                  "masks": inst["masks"].as_subclass(Tensor).to(device, torch.uint8)[keep]}
        keypoints = target_keypoints(inst)
        if keypoints is not None:  # (N, K, 3) [x, y, v], torchvision's
            target["keypoints"] = keypoints.to(device)[keep]
        targets.append(target)
    return targets, dropped


class InstanceTask:
    """Training losses and evaluation of instance models (see the module docstring).

    Args:
        loss_weights: weight per loss term (missing terms weigh 1).
        num_classes, ignore_index, class_names: of the data (``num_classes`` counts the background).
        thing_classes: semantic class of each instance label 1..K (for the pasted semantic maps).
        eval_cfg: ``cfg.eval`` (``score_threshold`` of the pasted maps in the overlays).
        key_metric: the metric that picks ``best.pt`` (default ``mask_AP``; a model's
            ``key_metric``, e.g. Keypoint R-CNN's ``kp_AP``).
    """

    name = "instance"
    key_metric = "mask_AP"
    metric_names = ("mask_AP", "mask_AP50", "mask_AP75", "bbox_AP", "bbox_AP50", "bbox_AP75",
                    "kp_AP", "kp_AP50", "kp_AP75", "mIoU", "mean_acc", "pixel_acc")

    def __init__(self, *, loss_weights: dict[str, float], num_classes: int, ignore_index: int,
                 class_names: Sequence[str], thing_classes: Sequence[int] | None = None, eval_cfg=None,
                 key_metric: str | None = None) -> None:
        self.loss_weights = dict(loss_weights)
        if key_metric is not None:
            self.key_metric = key_metric
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.class_names = list(class_names)
        self.thing_classes = list(thing_classes) if thing_classes is not None else None
        self.eval_cfg = eval_cfg
        self.dropped_boxes = 0
        self._warn_at = 1

    def losses(self, model: nn.Module, batch: dict, device: torch.device) -> dict[str, Tensor]:
        """Weighted loss terms of one training batch (the model's loss dict)."""
        images = [im.to(device, non_blocking=True) for im in batch["image"]]
        targets, dropped = training_targets(batch["instances"], device)
        self._count_dropped(dropped + sum(int(m.get("dropped_boxes", 0)) for m in batch["meta"]))
        losses = model(images, targets)
        return {k: self.loss_weights.get(k, 1.0) * v for k, v in losses.items()}

    def _count_dropped(self, n: int) -> None:
        if not n:
            return
        self.dropped_boxes += n
        if self.dropped_boxes >= self._warn_at:  # at 1, 2, 4, 8, ... dropped boxes: not every batch
            warnings.warn(f"dropped {n} box(es) of zero width or height from this training batch "
                          f"({self.dropped_boxes} so far): degenerate annotations, or objects the "
                          "transforms cropped away", stacklevel=2)
            self._warn_at = 2 ** math.ceil(math.log2(self.dropped_boxes + 1))

    @torch.inference_mode()
    def predict(self, model: nn.Module, images: Tensor) -> Tensor:
        """Semantic labels (B, H, W) int64 of the detections' masks (boxes for models without
        masks) pasted by descending score (``eval.score_threshold``), for the overlays."""
        preds = model(list(images))
        thr = getattr(self.eval_cfg, "score_threshold", 0.5)
        return torch.stack([instances_to_semantic(boxes_as_masks({k: v.cpu() for k, v in p.items()},
                                                                 tuple(images.shape[-2:])), tuple(images.shape[-2:]),
                                                  score_threshold=thr, thing_classes=self.thing_classes,
                                                  num_classes=self.num_classes)
                            for p in preds]).to(images.device)
