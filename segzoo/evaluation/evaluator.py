"""Scoring a model on a loader: semantic metrics, instance AP, or both rows ("cross-task").

One loop for every model, by ``model.task``:

* ``"semantic"`` models run through :class:`~segzoo.inference.modes.SemanticInferencer` (the
  ``eval:`` config: whole / slide / overlap-tile, TTA); their argmax map gives the semantic row
  (confusion matrix metrics + boundary IoU); with ``cross_task`` their connected components per thing
  class (score = mean class probability) give the instance row (COCO box/mask AP).
* ``"instance"`` models get ``model(list of (3, H, W) normalised images)`` and return torchvision
  detection dicts; they give the instance row, and, pasted into a semantic map by descending score,
  the semantic row.

Metrics are computed at the label's original resolution when the val pipeline resized the sample
and ``eval.original_size`` is true (mmsegmentation's behaviour): logits are upsampled (bilinear) to
the original size before the argmax; instance boxes/masks are rescaled to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import v2
from tqdm import tqdm

from segzoo import distributed
from segzoo.data.instances import SanitizeInstances
from segzoo.errors import ConfigError, DataError
from segzoo.inference.checks import check_finite_output, check_input_size, image_names, model_task
from segzoo.inference.instances import rescale_instances
from segzoo.inference.modes import SemanticInferencer
from segzoo.metrics import BoundaryIoU, ConfusionMatrix
from segzoo.metrics.cross_task import (
    contour_to_instances,
    instances_to_semantic,
    semantic_to_instances,
)
from segzoo.metrics.instance import InstanceEvaluator
from segzoo.metrics.keypoints import boxes_as_masks
from segzoo.metrics.nuclei import NucleiScore, gt_id_map, id_map_from_masks

_RESIZE_ONLY = (v2.Resize, v2.ToDtype, v2.Normalize, v2.ToImage, v2.ToPureTensor, SanitizeInstances)


def prepare_eval_dataset(dataset: Any, original_size: bool = True) -> None:
    """Make a val dataset keep its original masks when its pipeline resizes (see module docstring).

    Raises:
        ConfigError: ``original_size`` with a val pipeline that does more than resize (crops or
            flips cannot be undone by upsampling).
    """
    if not hasattr(dataset, "keep_original"):
        return
    steps = getattr(getattr(dataset, "transforms", None), "transforms", [])
    if original_size:
        other = [type(t).__name__ for t in steps if not isinstance(t, _RESIZE_ONLY)]
        if other:
            raise ConfigError(
                f"'eval.original_size' scores at the original label size, which needs a val "
                f"pipeline that only resizes; it has {', '.join(other)}. Remove them from "
                "data.val.transforms or set eval.original_size: false")
    dataset.keep_original = bool(original_size)


class Scorer:
    """Accumulates the semantic row and (optionally) the instance row over batches.

    Args:
        num_classes, ignore_index, class_names: of the data.
        thing_classes: semantic class of each instance label 1..K (default: every class but 0).
        eval_cfg: an ``EvalConfig`` (boundary IoU, thresholds); None for the defaults.
        instance: also accumulate COCO AP (needs instance targets in the batches).
        device: where the confusion matrix lives.
        categories, label_to_category: COCO categories (``{"id", "name"}``) and instance label ->
            category id (a COCO dataset's), so the results json carries the dataset's category ids;
            default: ids = labels 1..K named after the thing classes.
        keypoint_sigmas: per-keypoint OKS sigmas of keypoint AP (a keypoint dataset's
            ``keypoint_sigmas``; default COCO's person sigmas).
        contour_class: the dataset's contour class (``instance_folder`` with ``contour: true``),
            needed by ``eval.instance_decoder: contour``.

    With ``eval.nuclei_metrics`` the scorer also reports the foreground (every class but 0
    against background) ``fg_IoU``, ``fg_Dice``, ``fg_BIoU``, and with an instance row the DSB
    2018 score and merged-object count of :mod:`segzoo.metrics.nuclei` (``dsb_mAP``, ``merged``,
    ``merged_frac``, ``num_objects``, ``num_pred_objects``).

    Raises:
        ConfigError: ``eval.instance_decoder: contour`` on a dataset without a contour class.
    """

    def __init__(self, *, num_classes: int, ignore_index: int, class_names: Sequence[str] | None = None,
                 thing_classes: Sequence[int] | None = None, eval_cfg: Any = None, instance: bool = False,
                 device: torch.device | str = "cpu", categories: Sequence[dict] | None = None,
                 label_to_category: dict[int, int] | None = None,
                 keypoint_sigmas: Sequence[float] | None = None, contour_class: int | None = None) -> None:
        self.num_classes = num_classes
        self.decoder = getattr(eval_cfg, "instance_decoder", "components")
        if self.decoder == "contour" and contour_class is None:
            raise ConfigError("'eval.instance_decoder' is 'contour' but the val dataset has no contour "
                              "class; use instance_folder with contour: true (train and val), or "
                              "instance_decoder: components")
        self.contour_class = contour_class
        nuclei = bool(getattr(eval_cfg, "nuclei_metrics", False))
        self.fg = ConfusionMatrix(2, ignore_index, device=device) if nuclei else None
        self.fg_boundary = BoundaryIoU(2, ignore_index, device=device,
                                       dilation_ratio=getattr(eval_cfg, "boundary_dilation_ratio", 0.02)) \
            if nuclei else None
        self.nuclei = NucleiScore() if nuclei and instance else None
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.things = list(thing_classes) if thing_classes is not None else \
            [c for c in range(1, num_classes) if c != contour_class]
        self.score_threshold = getattr(eval_cfg, "score_threshold", 0.5)
        self.min_area = getattr(eval_cfg, "min_area", 1)
        self.connectivity = getattr(eval_cfg, "connectivity", 8)
        self.cm = ConfusionMatrix(num_classes, ignore_index, device=device)
        self.boundary = BoundaryIoU(num_classes, ignore_index, device=device,
                                    dilation_ratio=getattr(eval_cfg, "boundary_dilation_ratio", 0.02)) \
            if getattr(eval_cfg, "boundary_iou", True) else None
        if categories and label_to_category:  # COCO category ids in the results
            self.instances = InstanceEvaluator(list(categories), label_to_category=label_to_category,
                                               keypoint_sigmas=keypoint_sigmas) if instance else None
        else:
            self.instances = InstanceEvaluator([self.class_names[c] for c in self.things],
                                               keypoint_sigmas=keypoint_sigmas) if instance else None
        self.num_images = 0
        self._next_id = 1

    # ------------------------------------------------------------------ per image
    def _semantic(self, labels: Tensor, target: Tensor) -> None:
        self.cm.update(labels, target)
        if self.boundary is not None:
            self.boundary.update(labels, target)
        if self.fg is not None:  # object (any class but 0) against background
            fg_target = torch.where(target == self.ignore_index, target, (target != 0).long())
            fg_labels = (labels != 0).long()
            self.fg.update(fg_labels, fg_target)
            self.fg_boundary.update(fg_labels, fg_target)

    def _nuclei(self, pred: dict, gt_instances: dict, size: tuple[int, int], score_threshold: float) -> None:
        if self.nuclei is not None:
            pred_ids = id_map_from_masks(pred["masks"], pred["scores"], score_threshold=score_threshold)
            self.nuclei.update(pred_ids, gt_id_map(gt_instances, size))

    def _image_id(self, meta: dict) -> int:
        """The dataset's image id (COCO), else its index + 1: unique across processes."""
        image_id = meta.get("image_id")
        if image_id is None and meta.get("index") is not None:
            image_id = int(meta["index"]) + 1
        if image_id is None:
            image_id, self._next_id = self._next_id, self._next_id + 1
        return int(image_id)

    @staticmethod
    def _targets(batch: dict, i: int, need_instances: bool) -> tuple[Tensor, dict | None]:
        meta = batch["meta"][i]
        mask = meta.get("orig_mask", batch["mask"][i])
        inst = None
        if need_instances:
            inst = meta.get("orig_instances") or (batch.get("instances") or [None] * (i + 1))[i]
            if inst is None:
                raise DataError(
                    f"{meta.get('image_path', 'the val dataset')}: no instance annotations to score "
                    "instance AP against; use a dataset with instances (e.g. shapes with "
                    "with_instances: true, coco, voc with instances: true) or turn cross_task off")
        return mask, inst

    def add_semantic(self, logits: Tensor, target: Tensor, gt_instances: dict | None = None,
                     image_id: int | None = None) -> None:
        """One image's logits (K, h, w) (resized to the target's size if needed), target (H, W)."""
        size = tuple(target.shape[-2:])
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
        labels = logits.argmax(0)
        self._semantic(labels, target)
        if self.instances is not None and gt_instances is not None:
            pred = self.decode(logits, labels)
            self.instances.update([pred], [image_id if image_id is not None else self.num_images + 1],
                                  targets=[gt_instances], image_sizes=[size])
            self._nuclei(pred, gt_instances, size, 0.0)
        self.num_images += 1

    def decode(self, logits: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        """A semantic model's instances from its logits (K, H, W) of one image: connected components
        of the thing classes, or contour decoding (``eval.instance_decoder``); a detection dict."""
        probs = logits.float().softmax(0)
        if self.decoder == "contour":
            return contour_to_instances(probs, self.contour_class, thing_classes=self.things,
                                        connectivity=self.connectivity, min_area=self.min_area, labels=labels)
        return semantic_to_instances(probs, thing_classes=self.things, connectivity=self.connectivity,
                                     min_area=self.min_area, labels=labels)

    def add_instances(self, pred: dict, target: Tensor, gt_instances: dict | None = None,
                      image_id: int | None = None) -> None:
        """One image's detections (at the target's size) and its semantic target (H, W)."""
        size = tuple(target.shape[-2:])
        labels = instances_to_semantic(boxes_as_masks(pred, size), size, score_threshold=self.score_threshold,
                                       thing_classes=self.things, num_classes=self.num_classes)
        self._semantic(labels.to(target.device), target)
        if self.instances is not None and gt_instances is not None:
            self.instances.update([pred], [image_id if image_id is not None else self.num_images + 1],
                                  targets=[gt_instances], image_sizes=[size])
            if "masks" in pred:
                self._nuclei(pred, gt_instances, size, self.score_threshold)
        self.num_images += 1

    # ------------------------------------------------------------------ per batch
    @torch.inference_mode()
    def update(self, model: nn.Module, batch: dict, device: torch.device | str,
               inferencer: SemanticInferencer | None = None) -> None:
        """Predict one collated batch with ``model`` and accumulate it."""
        metas = batch["meta"]
        need_inst = self.instances is not None
        if model_task(model) == "instance":  # a list of images, of varying sizes
            images = [im.to(device, non_blocking=True) for im in batch["image"]]
            preds = model(images)
            for i, pred in enumerate(preds):
                for key in ("boxes", "scores"):
                    if key in pred:
                        check_finite_output(pred[key], image_names([metas[i]]))
                mask, inst = self._targets(batch, i, need_inst)
                pred = rescale_instances(pred, images[i].shape[-2:], mask.shape[-2:])
                self.add_instances(pred, mask.to(device), inst, self._image_id(metas[i]))
            return
        images = batch["image"].to(device, non_blocking=True)
        inferencer = inferencer or SemanticInferencer(model)
        if inferencer.mode != "slide":
            check_input_size(model, images.shape[-2:], f"val image {image_names(metas)}")
        logits = inferencer(images)
        check_finite_output(logits, image_names(metas))
        if not need_inst and not any("orig_mask" in m for m in metas):  # the fast, batched path
            self._semantic(logits.argmax(1), batch["mask"].to(device, non_blocking=True))
            self.num_images += images.shape[0]
            return
        for i in range(images.shape[0]):
            mask, inst = self._targets(batch, i, need_inst)
            self.add_semantic(logits[i], mask.to(device), inst, self._image_id(metas[i]))

    def counts(self) -> Tensor:
        """The semantic row's state as one int64 vector (confusion matrix, boundary counts, image
        count), e.g. to sum across ranks before :meth:`load_counts` and :meth:`compute`."""
        parts = [self.cm.matrix.reshape(-1)]
        if self.boundary is not None:
            parts += [self.boundary.intersection, self.boundary.union]
        if self.fg is not None:
            parts += [self.fg.matrix.reshape(-1), self.fg_boundary.intersection, self.fg_boundary.union]
        parts.append(torch.tensor([self.num_images], device=self.cm.matrix.device))
        return torch.cat(parts)

    def load_counts(self, counts: Tensor) -> None:
        """Set the state from a vector of :meth:`counts` (e.g. summed over ranks)."""
        counts = counts.to(self.cm.matrix.device)
        k2 = self.cm.matrix.numel()
        self.cm.matrix.copy_(counts[:k2].view_as(self.cm.matrix))
        if self.boundary is not None:
            k = self.num_classes
            self.boundary.intersection.copy_(counts[k2:k2 + k])
            self.boundary.union.copy_(counts[k2 + k:k2 + 2 * k])
            k2 += 2 * k
        if self.fg is not None:
            self.fg.matrix.copy_(counts[k2:k2 + 4].view(2, 2))
            self.fg_boundary.intersection.copy_(counts[k2 + 4:k2 + 6])
            self.fg_boundary.union.copy_(counts[k2 + 6:k2 + 8])
        self.num_images = int(counts[-1])

    def compute(self) -> dict:
        """Flat metrics: the semantic row (``mIoU`` ...), ``mBIoU``/``bIoU`` if enabled, and with
        instances the COCO row (``bbox_AP`` ..., ``mask_AP`` ...), plus ``num_images``."""
        metrics = self.cm.compute(self.class_names)
        if self.boundary is not None:
            metrics.update(self.boundary.compute(self.class_names))
        if self.instances is not None:
            inst = self.instances.compute()
            self.instance_summary = inst.pop("summary")
            inst.pop("num_images")
            metrics.update(inst)
        if self.fg is not None:
            m = self.fg.matrix.double().cpu()
            tp, wrong = float(m[1, 1]), float(m[0, 1] + m[1, 0])
            metrics["fg_IoU"] = tp / (tp + wrong) if tp + wrong else float("nan")
            metrics["fg_Dice"] = 2 * tp / (2 * tp + wrong) if tp + wrong else float("nan")
            metrics["fg_BIoU"] = self.fg_boundary.compute(["background", "object"])["bIoU"]["object"]
        if self.nuclei is not None:
            metrics.update(self.nuclei.compute())
        metrics["num_images"] = self.num_images
        return metrics


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, *, num_classes: int, ignore_index: int,
             class_names: Sequence[str] | None = None, eval_cfg: Any = None,
             cross_task: bool | None = None, device: torch.device | str = "cpu", progress: bool = True,
             desc: str = "eval", results_path: str | Path | None = None, sharded: bool = False) -> dict:
    """Score ``model`` on every batch of ``loader`` (its mode is restored afterwards).

    Args:
        eval_cfg: ``cfg.eval`` (inference mode, TTA, boundary IoU, cross-task thresholds).
        cross_task: compute both rows (default: ``eval_cfg.cross_task``, else False). A semantic
            model always gets the semantic row, an instance model the instance row.
        results_path: where to write the COCO results json of the instance row, if any.
        sharded: under torch.distributed, each process passes its own share of the data (no
            sample twice, as the trainer's val loader gives): the count vectors are summed and the
            detections gathered across processes, so every process returns the metrics of the
            whole split, equal to a single process's. Only process 0 writes ``results_path``.

    Returns:
        the metrics of :meth:`Scorer.compute` plus ``"task"`` (the model's) and, with an instance
        row, ``"instance_source"``/``"semantic_source"`` ("model", "components" or "pasted").

    Raises:
        ConfigError: bad ``eval`` settings. DataError: instance scoring without instance targets.
    """
    task = model_task(model)
    if cross_task is None:
        cross_task = bool(getattr(eval_cfg, "cross_task", False))
    want_instances = cross_task or task == "instance"
    dataset = loader.dataset
    while isinstance(dataset, Subset):  # a distributed shard of the val set
        dataset = dataset.dataset
    prepare_eval_dataset(dataset, getattr(eval_cfg, "original_size", True))
    inferencer = SemanticInferencer.from_config(model, eval_cfg) if task == "semantic" else None
    scorer = Scorer(num_classes=num_classes, ignore_index=ignore_index, class_names=class_names,
                    thing_classes=dataset.things() if hasattr(dataset, "things") else None,
                    eval_cfg=eval_cfg, instance=want_instances, device=device,
                    categories=getattr(dataset, "categories", None),
                    label_to_category=getattr(dataset, "label_to_category", None),
                    keypoint_sigmas=getattr(dataset, "keypoint_sigmas", None),
                    contour_class=getattr(dataset, "contour_class", None))
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
            scorer.update(model, batch, device, inferencer)
    finally:
        model.train(was_training)
    sharded = sharded and distributed.info().is_distributed
    if sharded:
        # summed on the device the backend needs (NCCL: CUDA; gloo: CPU)
        counts = scorer.counts()
        scorer.load_counts(distributed.all_reduce_sum(counts.to(device)).to(counts.device))
        if scorer.instances is not None:
            scorer.instances.merge(distributed.all_gather_object(scorer.instances.state()))
        if scorer.nuclei is not None:
            scorer.nuclei.merge(distributed.all_gather_object(scorer.nuclei.state()))
    metrics = scorer.compute()
    metrics["task"] = task
    if want_instances:
        metrics["instance_source"] = "model" if task == "instance" else "components"
        metrics["semantic_source"] = "model" if task == "semantic" else "pasted"
        if results_path is not None and (not sharded or distributed.info().is_main):
            scorer.instances.write_results(results_path)
    return metrics
