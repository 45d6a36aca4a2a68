"""Instance segmentation metrics: COCO box, mask and keypoint AP through pycocotools' COCOeval.

Predictions follow torchvision's detection output, one dict per image::

    {"boxes": (N, 4) float XYXY in the image's pixels, "labels": (N,) int64 in 1..K,
     "scores": (N,) float, "masks": (N, 1, H, W) float probabilities or (N, H, W) bool,
     "keypoints": (N, K, 3) float [x, y, v] (keypoint models)}

Masks are binarised at ``mask_threshold`` (0.5, torchvision's) and stored as COCO RLE, so the
evaluator keeps only compact run-length codes, never full masks. Ground truth comes from a COCO
json (``InstanceEvaluator.from_coco``) or from dataset targets (``add_ground_truth`` /
``update(..., targets=...)``: ``boxes`` XYXY, ``labels`` 1..K, ``masks`` (N, H, W), optional
``iscrowd``). Contiguous labels map to COCO category ids through ``label_to_category`` (identity by
default). Reported (fractions in [0, 1]; NaN where COCOeval has no ground truth to score):

* ``bbox_AP``, ``bbox_AP50``, ``bbox_AP75``, ``bbox_APs``, ``bbox_APm``, ``bbox_APl`` and the same
  with ``mask_`` (COCOeval ``stats[0:6]``: AP averaged over IoU 0.50:0.05:0.95, at IoU 0.5 and 0.75,
  and for small (< 32^2 px), medium and large objects; at most 100 detections per image);
* ``bbox_AP_per_class``, ``mask_AP_per_class``: AP@[.5:.95] of each category (area all, 100 dets);
* ``kp_AP``, ``kp_AP50``, ``kp_AP75``, ``kp_APm``, ``kp_APl``, ``kp_AP_per_class``: keypoint AP
  over OKS thresholds (see :mod:`segzoo.metrics.keypoints`; ground truth ``keypoints`` (N, K, 3)).

By default box AP is always computed, mask AP when the predictions carry ``masks`` and keypoint AP
when they carry ``keypoints``; ``iou_types`` fixes the set instead.

Crowd ground truth (``iscrowd=1``) is matched the COCO way: detections overlapping it are ignored,
neither true nor false positives.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from segzoo.metrics.keypoints import (
    KP_STAT_NAMES,
    flat_keypoints,
    gt_keypoint_fields,
    resolve_sigmas,
    target_keypoints,
)

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
IOU_TYPES = {"bbox": "bbox", "segm": "mask", "keypoints": "kp"}  # COCOeval type -> metric prefix
_PRED_KEY = {"segm": "masks", "keypoints": "keypoints"}  # what a prediction needs for the type


def binary_masks(masks: Tensor, threshold: float = 0.5) -> Tensor:
    """(N, 1, H, W) probabilities or (N, H, W) bool/uint8 masks -> (N, H, W) bool (on the CPU).

    Raises:
        ValueError: another shape.
    """
    masks = torch.as_tensor(masks).detach().cpu()
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, 1, H, W) or (N, H, W), got {tuple(masks.shape)}")
    if masks.dtype == torch.bool:
        return masks
    if masks.is_floating_point():
        return masks > threshold
    return masks != 0


def encode_masks(masks: Tensor, threshold: float = 0.5) -> list[dict]:
    """Masks (see :func:`binary_masks`) -> COCO RLEs ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    m = binary_masks(masks, threshold).numpy()
    if m.shape[0] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def decode_masks(rles: Sequence[dict], size: tuple[int, int] | None = None) -> Tensor:
    """COCO RLEs (counts as str or bytes) -> (N, H, W) bool; ``size`` (H, W) is needed when empty."""
    if not rles:
        if size is None:
            raise ValueError("decoding no RLEs needs the image size")
        return torch.zeros(0, *size, dtype=torch.bool)
    rles = [{"size": r["size"], "counts": r["counts"].encode("ascii") if isinstance(r["counts"], str)
             else r["counts"]} for r in rles]
    return torch.from_numpy(mask_utils.decode(rles).transpose(2, 0, 1).astype(bool))


def xyxy_to_xywh(boxes: Tensor) -> list[list[float]]:
    """(N, 4) XYXY -> COCO ``[x, y, width, height]`` lists."""
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4).cpu()
    return torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).tolist()


class InstanceEvaluator:
    """Accumulates predictions (and, unless given a COCO json, ground truth) image by image, then
    scores them with COCOeval (see the module docstring).

    Args:
        categories: the categories: names of labels 1..K (ids = labels), or COCO category dicts
            ``{"id", "name"}``.
        label_to_category: contiguous label -> COCO category id (identity if None).
        iou_types: subset of ``("bbox", "segm", "keypoints")``: "segm" needs masks and
            "keypoints" keypoints in every prediction; None (default): bbox, plus segm/keypoints
            when the predictions carry masks/keypoints.
        mask_threshold: probability above which a predicted mask pixel is foreground.
        keypoint_sigmas: per-keypoint OKS sigmas (default COCO's 17 person sigmas).
        gt: a COCO object holding the ground truth (see :meth:`from_coco`); None to collect it
            from targets.
    """

    def __init__(self, categories: Sequence[str] | Sequence[Mapping[str, Any]], *,
                 label_to_category: Mapping[int, int] | None = None,
                 iou_types: Sequence[str] | None = None, mask_threshold: float = 0.5,
                 gt: COCO | None = None, keypoint_sigmas: Sequence[float] | None = None) -> None:
        if not categories:
            raise ValueError("no categories")
        if isinstance(categories[0], str):
            categories = [{"id": i, "name": n} for i, n in enumerate(categories, start=1)]
        self.categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]
        self.label_to_category = {int(k): int(v) for k, v in (label_to_category or {}).items()}
        unknown = set(iou_types or ()) - set(IOU_TYPES)
        if unknown:
            raise ValueError(f"iou_types must be among {sorted(IOU_TYPES)}, got {sorted(unknown)}")
        self.fixed_types = iou_types is not None
        self.iou_types = tuple(iou_types) if iou_types is not None else ("bbox",)
        self.keypoint_sigmas = keypoint_sigmas
        self.mask_threshold = mask_threshold
        self.gt = gt
        self.images: dict[int, dict] = {}
        self.gt_annotations: list[dict] = []
        self.results: list[dict] = []
        self.image_ids: list[int] = []

    @classmethod
    def from_coco(cls, annotation_file: str | os.PathLike | COCO, *,
                  label_to_category: Mapping[int, int] | None = None, **kwargs) -> InstanceEvaluator:
        """Ground truth from a COCO instances json (path or loaded ``COCO``); categories from it."""
        if isinstance(annotation_file, COCO):
            coco = annotation_file
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                coco = COCO(str(annotation_file))
        cats = [coco.cats[i] for i in sorted(coco.getCatIds())]
        return cls(cats, label_to_category=label_to_category, gt=coco, **kwargs)

    # ------------------------------------------------------------------ accumulation
    def _category(self, label: int) -> int:
        return self.label_to_category.get(int(label), int(label))

    def add_ground_truth(self, image_id: int, image_size: tuple[int, int], target: Mapping[str, Any]) -> None:
        """Ground truth of one image: ``boxes`` (N, 4) XYXY, ``labels`` (N,), ``masks`` (N, H, W)
        (optional: box areas are used without), ``iscrowd`` (N,) (optional, default 0)."""
        if self.gt is not None:
            raise ValueError("ground truth comes from the COCO json given to from_coco")
        h, w = int(image_size[0]), int(image_size[1])
        self.images[int(image_id)] = {"id": int(image_id), "height": h, "width": w}
        labels = torch.as_tensor(target["labels"]).reshape(-1).tolist()
        boxes = xyxy_to_xywh(target["boxes"])
        crowd = torch.as_tensor(target.get("iscrowd", torch.zeros(len(labels)))).reshape(-1).tolist()
        masks = target.get("masks")
        rles = encode_masks(masks) if masks is not None else [None] * len(labels)
        kps = target_keypoints(target)
        kps = flat_keypoints(kps) if kps is not None else [None] * len(labels)
        for label, box, rle, iscrowd, kp in zip(labels, boxes, rles, crowd, kps):
            ann = {"id": len(self.gt_annotations) + 1, "image_id": int(image_id),
                   "category_id": self._category(label), "bbox": box, "iscrowd": int(iscrowd)}
            if rle is not None:
                ann["segmentation"] = rle
                ann["area"] = float(mask_utils.area(_bytes_rle(rle)))
            else:
                ann["area"] = float(box[2] * box[3])
            if kp is not None:
                ann.update(gt_keypoint_fields(kp, len(kp) // 3))
            self.gt_annotations.append(ann)

    def add_prediction(self, image_id: int, prediction: Mapping[str, Any],
                       image_size: tuple[int, int] | None = None) -> None:
        """Predictions of one image (torchvision detection output, see the module docstring).

        Raises:
            ValueError: masks missing while "segm" is evaluated, or of another size than the image.
        """
        image_id = int(image_id)
        self.image_ids.append(image_id)
        boxes = xyxy_to_xywh(prediction["boxes"])
        labels = torch.as_tensor(prediction["labels"]).reshape(-1).tolist()
        scores = torch.as_tensor(prediction["scores"]).reshape(-1).tolist()
        if not len(boxes) == len(labels) == len(scores):
            raise ValueError(f"image {image_id}: {len(boxes)} boxes, {len(labels)} labels, {len(scores)} scores")
        if not self.fixed_types:  # evaluate what the predictions carry
            self.iou_types += tuple(t for t, k in _PRED_KEY.items() if k in prediction and t not in self.iou_types)
        for iou_type, key in _PRED_KEY.items():
            if prediction.get(key) is None and iou_type in self.iou_types:
                raise ValueError(f"image {image_id}: no {key!r} in the prediction but {iou_type!r} is evaluated")
        masks = prediction.get("masks")
        rles: list[dict | None] = [None] * len(labels)
        if masks is not None:
            m = binary_masks(masks, self.mask_threshold)
            size = image_size or self._image_size(image_id)
            if size is not None and tuple(m.shape[-2:]) != tuple(size) and len(labels):
                raise ValueError(f"image {image_id}: masks are {tuple(m.shape[-2:])} but the image is "
                                 f"{tuple(size)}; paste masks at the image's size")
            rles = encode_masks(m)
        kps = prediction.get("keypoints")
        kps = flat_keypoints(kps) if kps is not None else [None] * len(labels)
        for box, label, score, rle, kp in zip(boxes, labels, scores, rles, kps):
            res = {"image_id": image_id, "category_id": self._category(label), "bbox": box,
                   "score": float(score)}
            if rle is not None:
                res["segmentation"] = rle
            if kp is not None:
                res["keypoints"] = kp
            self.results.append(res)

    def update(self, predictions: Sequence[Mapping[str, Any]], image_ids: Sequence[int], *,
               targets: Sequence[Mapping[str, Any]] | None = None,
               image_sizes: Sequence[tuple[int, int]] | None = None) -> None:
        """A batch: per image, its predictions and (without a COCO json) its ground truth."""
        for i, (pred, image_id) in enumerate(zip(predictions, image_ids)):
            size = image_sizes[i] if image_sizes is not None else None
            if targets is not None:
                if size is None:
                    raise ValueError("image_sizes are needed with targets")
                self.add_ground_truth(image_id, size, targets[i])
            self.add_prediction(image_id, pred, size)

    def state(self) -> dict[str, Any]:
        """What was accumulated (plain lists/dicts), e.g. to gather across processes."""
        return {"images": list(self.images.values()), "gt": list(self.gt_annotations),
                "results": list(self.results), "image_ids": list(self.image_ids), "iou_types": list(self.iou_types)}

    def merge(self, states: Sequence[Mapping[str, Any]]) -> None:
        """Replace the accumulated data by the union of ``states`` (from :meth:`state`; image ids
        must be unique across them); ground-truth annotation ids are renumbered."""
        self.images, self.gt_annotations, self.results, self.image_ids = {}, [], [], []
        for st in states:
            self.images.update({int(im["id"]): im for im in st["images"]})
            for ann in st["gt"]:
                self.gt_annotations.append({**ann, "id": len(self.gt_annotations) + 1})
            self.results.extend(st["results"])
            self.image_ids.extend(st["image_ids"])
            self.iou_types += tuple(t for t in st.get("iou_types", ()) if t not in self.iou_types)

    def _image_size(self, image_id: int) -> tuple[int, int] | None:
        img = self.gt.imgs.get(image_id) if self.gt is not None else self.images.get(image_id)
        return (img["height"], img["width"]) if img else None

    # ------------------------------------------------------------------ output
    def ground_truth(self) -> COCO:
        """The ground truth as a pycocotools ``COCO`` object."""
        if self.gt is not None:
            return self.gt
        coco = COCO()
        coco.dataset = {"images": list(self.images.values()), "annotations": self.gt_annotations,
                        "categories": copy.deepcopy(self.categories)}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def write_results(self, path: str | os.PathLike) -> Path:
        """Write the predictions as a COCO results json (a list of
        ``{"image_id", "category_id", "bbox" [x, y, w, h], "score", "segmentation" RLE}``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.results))
        return path

    def write_ground_truth(self, path: str | os.PathLike) -> Path:
        """Write the ground truth as a COCO instances json."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.ground_truth().dataset))
        return path

    def compute(self) -> dict[str, Any]:
        """Run COCOeval for each iou type; returns the metrics of the module docstring plus
        ``num_images`` and ``summary`` (COCOeval's printed table per type)."""
        gt = self.ground_truth()
        if "segm" in self.iou_types and any("segmentation" not in a for a in gt.dataset["annotations"]):
            raise ValueError("mask AP needs ground-truth masks; evaluate iou_types=('bbox',) only")
        if "keypoints" in self.iou_types and any("keypoints" not in a for a in gt.dataset["annotations"]):
            raise ValueError("keypoint AP needs ground-truth keypoints (targets with 'keypoints' (N, K, 3))")
        image_ids = sorted(set(self.image_ids)) or sorted(gt.getImgIds())
        names = {c["id"]: c["name"] for c in gt.dataset["categories"]}
        out: dict[str, Any] = {"num_images": len(image_ids), "summary": {}}
        for iou_type in self.iou_types:
            prefix = IOU_TYPES[iou_type]
            dets = [dict(r) for r in self.results]
            for d in dets:
                if iou_type != "bbox":
                    d.pop("bbox", None)  # else loadRes scores the box as the segmentation/keypoints
                if iou_type != "segm":
                    d.pop("segmentation", None)
                if iou_type != "keypoints":
                    d.pop("keypoints", None)  # else loadRes reads every type as keypoints
            evaluator = COCOeval(gt, _load_results(gt, dets, iou_type), iou_type)
            evaluator.params.imgIds = image_ids
            stat_names = STAT_NAMES
            if iou_type == "keypoints":
                k = max((len(a["keypoints"]) // 3 for a in gt.dataset["annotations"]), default=0)
                evaluator.params.kpt_oks_sigmas = resolve_sigmas(self.keypoint_sigmas, k)
                stat_names = KP_STAT_NAMES
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                evaluator.evaluate()
                evaluator.accumulate()
                evaluator.summarize()
            out["summary"][prefix] = text.getvalue()
            for name, value in zip(stat_names, evaluator.stats[:len(stat_names)]):
                out[f"{prefix}_{name}"] = float(value) if value >= 0 else float("nan")
            precision = evaluator.eval["precision"]  # [T, R, K, A, M]
            per_class = {}
            for k, cat_id in enumerate(evaluator.params.catIds):
                p = precision[:, :, k, 0, -1]
                p = p[p > -1]
                per_class[names.get(cat_id, str(cat_id))] = float(p.mean()) if p.size else float("nan")
            out[f"{prefix}_AP_per_class"] = per_class
        return out


def _bytes_rle(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def _load_results(gt: COCO, dets: list[dict], iou_type: str) -> COCO:
    """``gt.loadRes`` that also takes an empty result list (no detections: AP 0 where there is
    ground truth), with RLE counts as bytes as pycocotools wants them."""
    for d in dets:
        if "segmentation" in d:
            d["segmentation"] = _bytes_rle(d["segmentation"])
    if dets:
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes(dets)
    res = COCO()
    res.dataset = {"images": list(gt.dataset["images"]), "categories": copy.deepcopy(gt.dataset["categories"]),
                   "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res
