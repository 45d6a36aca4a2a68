"""Per-instance targets in torchvision's detection format, built from masks or id maps, and the
pipeline step that keeps them valid after geometric transforms.

Instance masks are :class:`InstanceMask` tensors (a ``tv_tensors.Mask`` subclass): v2 transforms
move them exactly like masks (nearest resize, crop, flip, rotation), but padding and rotation
corners fill them with 0 (outside the object), where the semantic mask gets ``ignore_index``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from segzoo.data.keypoints import mark_outside


class InstanceMask(tv_tensors.Mask):
    """(N, H, W) uint8 per-instance masks; a ``tv_tensors.Mask`` that pads with 0 (see the module
    docstring: transforms' fill dicts look types up exactly, so it takes the ``"others"`` fill)."""


def boxes_from_masks(masks: Tensor) -> Tensor:
    """(N, H, W) masks -> (N, 4) float XYXY in pixel-edge coordinates (x2 = last column + 1);
    an empty mask gets a zero box."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4)
    m = masks.bool()
    rows, cols = m.any(2), m.any(1)
    ar_h, ar_w = torch.arange(h), torch.arange(w)
    y1 = torch.where(rows, ar_h, h).amin(1)
    y2 = torch.where(rows, ar_h + 1, 0).amax(1)
    x1 = torch.where(cols, ar_w, w).amin(1)
    x2 = torch.where(cols, ar_w + 1, 0).amax(1)
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    boxes[~rows.any(1)] = 0
    return boxes


def make_instances(masks: Tensor, labels: Tensor | list[int], iscrowd: Tensor | list[int] | None = None,
                   boxes: Tensor | None = None) -> dict:
    """``{"boxes": BoundingBoxes (N, 4) XYXY, "masks": Mask (N, H, W) uint8, "labels": (N,) int64,
    "iscrowd": (N,) int64}``; boxes from the masks unless given."""
    masks = torch.as_tensor(masks)
    n, h, w = masks.shape
    labels = torch.as_tensor(labels, dtype=torch.int64).reshape(n)
    iscrowd = torch.zeros(n, dtype=torch.int64) if iscrowd is None else \
        torch.as_tensor(iscrowd, dtype=torch.int64).reshape(n)
    boxes = boxes_from_masks(masks) if boxes is None else torch.as_tensor(boxes, dtype=torch.float32).reshape(n, 4)
    return {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            "masks": masks.to(torch.uint8).as_subclass(InstanceMask),
            "labels": labels, "iscrowd": iscrowd}


def instances_from_id_map(ids: Tensor, id_labels: dict[int, int], crowd_ids: set[int] | None = None) -> dict:
    """Instances of an id map (H, W): one per id in ``id_labels`` (id -> label 1..K), in
    increasing id order; ids in ``crowd_ids`` are marked ``iscrowd``."""
    keys = sorted(id_labels)
    if keys:
        masks = ids.unsqueeze(0) == torch.tensor(keys).view(-1, 1, 1)
    else:
        masks = torch.zeros(0, *ids.shape, dtype=torch.bool)
    crowd = [int(k in (crowd_ids or set())) for k in keys]
    return make_instances(masks, [id_labels[k] for k in keys], crowd)


def _per_instance(inst: dict) -> tuple[Tensor, ...]:
    """The per-instance tensors v2.SanitizeBoundingBoxes filters with the boxes (it filters masks
    itself): labels, crowd flags, and keypoints with their visibility when present."""
    keys = ("labels", "iscrowd", "keypoints", "keypoints_visible")
    return tuple(inst[k] for k in keys if inst.get(k) is not None)


class SanitizeInstances(nn.Module):
    """Pipeline step (appended by :func:`segzoo.data.transforms.build_pipeline`) that keeps instance
    targets valid after geometric transforms; the semantic mask is never touched.

    * ``recompute_boxes=True`` (build_pipeline sets it when the specs crop or rotate): each box
      becomes the tight box of its transformed mask, as detectron2's ``recompute_boxes`` does with
      crops (a cropped or rotated box is no longer the box of the object's visible part).
    * Instances whose mask became empty, or whose box is smaller than ``min_size`` pixels in width
      or height (cropped away, or degenerate in the annotation), are dropped with their masks,
      labels and ``iscrowd`` flags (``v2.SanitizeBoundingBoxes`` on the ``instances`` dict). The
      number dropped is added to ``meta["dropped_boxes"]``, so the training engine can report it.
    * Keypoints (:mod:`segzoo.data.keypoints`) are dropped with their instances, and those that
      left the image get visibility 0 (not labelled).

    Samples without instances pass through.
    """

    def __init__(self, min_size: float = 1.0, recompute_boxes: bool = False) -> None:
        super().__init__()
        self.recompute_boxes = recompute_boxes
        self.sanitize = v2.SanitizeBoundingBoxes(min_size=min_size, labels_getter=_per_instance)

    def forward(self, sample: dict) -> dict:
        inst = sample.get("instances") if isinstance(sample, dict) else None
        if inst is None:
            return sample
        inst = dict(inst)
        before = len(inst["labels"])
        masks = inst.get("masks")
        if masks is not None and before:
            boxes = inst["boxes"]
            empty = ~masks.as_subclass(Tensor).flatten(1).bool().any(1)
            new = boxes_from_masks(masks.as_subclass(Tensor)) if self.recompute_boxes else \
                boxes.as_subclass(Tensor).clone()
            new[empty] = 0  # zero width: dropped below
            inst["boxes"] = tv_tensors.wrap(new.to(boxes.dtype), like=boxes)
        keypoints = inst.get("keypoints")
        inst = self.sanitize(inst)
        if keypoints is not None:
            inst = mark_outside({**inst, "keypoints": tv_tensors.wrap(inst["keypoints"], like=keypoints)})
        dropped = before - len(inst["labels"])
        if dropped and isinstance(sample.get("meta"), dict):
            sample["meta"]["dropped_boxes"] = sample["meta"].get("dropped_boxes", 0) + dropped
        return {**sample, "instances": inst}
