"""The second stage's detections: per-class NMS in a few large calls instead of one per class.

torchvision's ``RoIHeads.postprocess_detections`` turns every (proposal, class) pair scoring above
``box_score_thresh`` into a candidate box and suppresses overlaps class by class with
``batched_nms``. Above 25,000 candidates on a GPU (1,000 on the CPU) that runs one NMS per class
present, each preceded by a ``torch.where`` over the labels: two host syncs and about eight kernel
launches per class, 90 NMS calls for a COCO model whose candidates span every class (as with
``box_score_thresh=0``, the setting ``segzoo bench`` times detectors in), 184 of the 206 host syncs
left in a batch-1 detection once masks are pasted in one go (``benchmarks/detector_ops.py``).

:func:`grouped_batched_nms` gives ``torchvision.ops.batched_nms``'s result with a few NMS calls:
the candidates sorted by class, consecutive classes packed into groups of at most ``max_group_boxes``
boxes (a larger class is a group of its own), each group suppressed in one call with its classes
moved apart by coordinate offsets (torchvision's own trick below its threshold). The offsets reach
(classes in the group) x (image extent + 1), about 49,000 px for 62 classes of 800-pixel images,
where float32 spacing is 0.004 px: in float32 they would round the IoUs by about 1e-5 and flip
boxes that torchvision's per-class NMS keeps. So the offset boxes go to NMS in float64, which the
offsets do not round; its IoUs are then more exact than torchvision's float32 ones, and the kept
boxes differ only where torchvision's own IoU rounds across ``iou_threshold`` (an IoU within about
1e-7 of it). Apple's MPS has no float64 and keeps float32 offsets (:func:`offset_dtype`).

:class:`GroupedNMSPostprocess` puts it into the RoI heads: ``class_nms="grouped"``, or ``"auto"``
on a GPU; ``"torchvision"``, ``"auto"`` on the CPU (where an NMS call is not a host sync and
torchvision's CPU kernel works in O(boxes x kept)) and under the ONNX tracer keep torchvision's
``batched_nms``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor
from torchvision.ops import boxes as box_ops

CLASS_NMS_MODES = ("auto", "grouped", "torchvision")


def check_class_nms(mode: str) -> str:
    """``mode`` if it is one of :data:`CLASS_NMS_MODES`, else ValueError naming them."""
    if mode not in CLASS_NMS_MODES:
        raise ValueError(f"class_nms must be one of {CLASS_NMS_MODES}, got {mode!r}")
    return mode


def offset_dtype(device: torch.device) -> torch.dtype:
    """The dtype :func:`grouped_batched_nms` offsets boxes in: float64, except on Apple's MPS,
    which has no float64 (there the offsets round IoUs by up to about 1e-5, see the module doc)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _offset_nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou_threshold: float) -> Tensor:
    """NMS of boxes sorted by class, classes kept apart by offsets of (class rank) x (extent + 1),
    in :func:`offset_dtype` so that the offsets do not round the coordinates. No host sync."""
    rank = torch.zeros_like(classes)
    rank[1:] = (classes[1:] != classes[:-1]).cumsum(0)
    wide = offset_dtype(boxes.device)
    boxes = boxes.to(wide)
    offsets = rank.to(boxes) * (boxes.max() - boxes.min() + 1)
    return torchvision.ops.nms(boxes + offsets[:, None], scores.to(wide), iou_threshold)


def grouped_batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, *,
                        max_group_boxes: int = 5000) -> Tensor:
    """Per-class NMS: ``torchvision.ops.batched_nms``'s result in about N / ``max_group_boxes`` calls
    (up to the float32 rounding of torchvision's IoUs within about 1e-7 of ``iou_threshold``).

    Args:
        boxes: (N, 4) float boxes (x1, y1, x2, y2).
        scores: (N,) float scores.
        idxs: (N,) int64 class index of each box, >= 0; boxes of different classes never suppress
            each other.
        iou_threshold: boxes overlapping a higher-scoring box of their class with IoU above this
            are dropped.
        max_group_boxes: at most this many boxes per NMS call, unless one class has more (a GPU
            NMS call costs a (n, n / 64) 64-bit-word mask read back to the host: 3 MB at the
            default 5,000; the GPU check's ``postprocess`` step times 2,500 to 25,000).

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score (equal scores in any order, as
        with torchvision); empty for N = 0.

    Raises:
        ValueError: shapes that do not match.

    Host syncs: two (the class counts) plus one per group, against two per class for
    torchvision's per-class path.
    """
    n = boxes.shape[0]
    if boxes.dim() != 2 or boxes.shape[1] != 4 or scores.shape != (n,) or idxs.shape != (n,):
        raise ValueError(f"boxes (N, 4), scores (N,), idxs (N,) expected, got {tuple(boxes.shape)}, "
                         f"{tuple(scores.shape)}, {tuple(idxs.shape)}")
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.argsort(idxs, stable=True)
    if n <= max_group_boxes:
        return order[_offset_nms(boxes[order], scores[order], idxs[order], iou_threshold)]
    counts = torch.unique_consecutive(idxs[order], return_counts=True)[1].tolist()
    keeps, start, size = [], 0, 0
    for c in counts + [None]:  # close a group when the next class would overflow it
        if c is None or (size and size + c > max_group_boxes):
            sel = order[start:start + size]
            keeps.append(sel[_offset_nms(boxes[sel], scores[sel], idxs[sel], iou_threshold)])
            start, size = start + size, 0
        size += c or 0
    keep = torch.cat(keeps)
    return keep[scores[keep].argsort(descending=True)]


class GroupedNMSPostprocess:
    """Mixin for torchvision ``RoIHeads``: ``postprocess_detections`` with the per-class NMS of
    :func:`grouped_batched_nms` where ``class_nms`` says so (``"grouped"``, or ``"auto"`` on a GPU),
    else torchvision's own method. Otherwise the same steps as torchvision's: boxes decoded and
    clipped to the image, softmax scores, background dropped, candidates above ``score_thresh``,
    boxes under 0.01 px dropped, per-class NMS at ``nms_thresh``, the ``detections_per_img``
    highest scores kept. Returns per image (boxes (K, 4), scores (K,), labels (K,) int64).

    ``__init__(*args, class_nms="auto", **kwargs)``: the other arguments go to the next class
    (torchvision's ``RoIHeads``); raises ValueError for a ``class_nms`` not in :data:`CLASS_NMS_MODES`."""

    nms_group_boxes: int = 5000

    def __init__(self, *args, class_nms: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.class_nms = check_class_nms(class_nms)

    def _grouped_nms(self, device: torch.device) -> bool:
        check_class_nms(self.class_nms)
        if self.training or torchvision._is_tracing() or torch.jit.is_scripting():
            return False
        return self.class_nms == "grouped" or (self.class_nms == "auto" and device.type != "cpu")

    def postprocess_detections(self, class_logits: Tensor, box_regression: Tensor, proposals: list[Tensor],
                               image_shapes: list[tuple[int, int]]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        if not self._grouped_nms(class_logits.device):
            return super().postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        num_classes = class_logits.shape[-1]
        per_image = [p.shape[0] for p in proposals]
        all_boxes = self.box_coder.decode(box_regression, proposals).split(per_image)
        all_scores = F.softmax(class_logits, -1).split(per_image)
        out_boxes, out_scores, out_labels = [], [], []
        for boxes, scores, shape in zip(all_boxes, all_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)[:, 1:].reshape(-1, 4)
            labels = torch.arange(1, num_classes, device=scores.device).repeat(scores.shape[0])
            scores = scores[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = grouped_batched_nms(boxes, scores, labels, self.nms_thresh,
                                       max_group_boxes=self.nms_group_boxes)[:self.detections_per_img]
            out_boxes.append(boxes[keep])
            out_scores.append(scores[keep])
            out_labels.append(labels[keep])
        return out_boxes, out_scores, out_labels
