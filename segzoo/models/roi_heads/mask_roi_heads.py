"""Mask R-CNN's second stage: torchvision's :class:`~torchvision.models.detection.roi_heads.RoIHeads`
(proposal matching, 1:3 positive/negative sampling, box coding, Fast R-CNN loss, per-class NMS)
with the mask branch made configurable for the paper's ablations (He et al., ICCV 2017, sec. 3 and
Table 2):

* ``mask_loss="sigmoid"`` (the paper's): K binary masks, per-pixel sigmoid and the average binary
  cross-entropy on the mask of the RoI's ground-truth class only (no competition among classes);
  ``"softmax"``: a multinomial softmax over the K classes (background included) at every pixel,
  the ground-truth class inside the object's mask and background outside, cross-entropy averaged
  over the pixels; at inference the class's softmax probability is the mask.
* ``class_agnostic_mask``: one mask per RoI whatever its class (the paper: 29.7 vs 30.3 AP).
* inference: per-class NMS in a few grouped calls on a GPU
  (:mod:`segzoo.models.roi_heads.postprocess`), torchvision's detections up to the float32
  rounding of IoUs at the NMS threshold.
* ``shared_box_trunk`` (the C4 variant): the box head's ResNet conv5 output also feeds the mask
  predictor (training: the positive RoIs' conv5 maps are reused, as detectron does).

Training targets (:func:`project_masks`): each positive RoI's ground-truth mask is cropped and
resized to M x M with RoIAlign, as torchvision does, but only the matched masks are converted to
float, ``chunk`` at a time, so an image with hundreds of instances costs at most ``chunk`` float
masks of memory beyond its uint8 masks (the positives per image are capped anyway by
``box_batch_size_per_image x box_positive_fraction``, 128 by default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import roi_align

from segzoo.models.roi_heads.postprocess import GroupedNMSPostprocess


def project_masks(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, size: int, chunk: int = 32) -> Tensor:
    """Mask targets of positive RoIs: gt mask ``matched_idxs[i]`` cropped to ``boxes[i]`` and resized
    to (size, size) by RoIAlign (torchvision's ``project_masks_on_boxes``, chunked).

    Args:
        gt_masks: (G, H, W) uint8/bool masks of one image.
        boxes: (P, 4) float XYXY RoIs in the image's pixels.
        matched_idxs: (P,) int64 index of each RoI's ground truth.
        size: output side M.
        chunk: ground-truth masks converted to float at a time.

    Returns:
        (P, M, M) float targets in [0, 1] (the dtype of ``boxes``).
    """
    out = boxes.new_zeros((boxes.shape[0], size, size))
    if boxes.shape[0] == 0:
        return out
    wanted = torch.unique(matched_idxs)
    for start in range(0, len(wanted), chunk):
        ids = wanted[start:start + chunk]
        sel = torch.isin(matched_idxs, ids)
        local = torch.searchsorted(ids, matched_idxs[sel]).to(boxes.dtype)
        rois = torch.cat([local[:, None], boxes[sel]], 1)
        masks = gt_masks[ids][:, None].to(boxes.dtype)
        out[sel] = roi_align(masks, rois, (size, size), 1.0)[:, 0]
    return out


def mask_loss(mask_logits: Tensor, proposals: list[Tensor], gt_masks: list[Tensor], gt_labels: list[Tensor],
              matched_idxs: list[Tensor], *, kind: str = "sigmoid", class_agnostic: bool = False,
              chunk: int = 32) -> Tensor:
    """The mask loss over the positive RoIs of a batch (see the module docstring).

    Args:
        mask_logits: (P, K, M, M) logits (K = 1 when ``class_agnostic``).
        proposals, matched_idxs: per image, the positive RoIs (P_i, 4) and their gt indices (P_i,).
        gt_masks, gt_labels: per image, (G_i, H, W) masks and (G_i,) labels.
        kind: ``"sigmoid"`` or ``"softmax"``.

    Returns:
        a scalar; ``0 * mask_logits.sum()`` when there is no positive RoI (keeps the graph whole).
    """
    m = mask_logits.shape[-1]
    labels = torch.cat([lab[idx] for lab, idx in zip(gt_labels, matched_idxs)])
    targets = torch.cat([project_masks(g, p, i, m, chunk) for g, p, i in zip(gt_masks, proposals, matched_idxs)])
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    if kind == "softmax":
        pixel_labels = torch.where(targets >= 0.5, labels[:, None, None], torch.zeros_like(labels)[:, None, None])
        return F.cross_entropy(mask_logits, pixel_labels)
    channel = torch.zeros_like(labels) if class_agnostic else labels
    picked = mask_logits[torch.arange(len(labels), device=labels.device), channel]
    return F.binary_cross_entropy_with_logits(picked, targets.to(picked.dtype))


def mask_probabilities(mask_logits: Tensor, labels: list[Tensor], *, kind: str = "sigmoid",
                       class_agnostic: bool = False) -> list[Tensor]:
    """Per image, (N_i, 1, M, M) probabilities of the mask of each detection's class."""
    flat = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64, device=mask_logits.device)
    probs = mask_logits.softmax(1) if kind == "softmax" else mask_logits.sigmoid()
    channel = torch.zeros_like(flat) if class_agnostic else flat
    # sizes from .shape, not len(): the ONNX tracer keeps them symbolic (segzoo.export.detection)
    picked = probs[torch.arange(flat.shape[0], device=flat.device), channel][:, None]
    return list(picked.split([lab.shape[0] for lab in labels], 0))


class MaskRCNNRoIHeads(GroupedNMSPostprocess, RoIHeads):
    """torchvision's RoIHeads (box branch unchanged) with the configurable mask branch above.

    Args:
        *args, **kwargs: :class:`~torchvision.models.detection.roi_heads.RoIHeads`'s (box pooler,
            head, predictor, matching/sampling thresholds, inference thresholds).
        mask_roi_pool, mask_head, mask_predictor: the mask branch (required).
        mask_loss: ``"sigmoid"`` or ``"softmax"``.
        class_agnostic_mask: the predictor outputs one mask channel.
        shared_box_trunk: C4: the mask predictor reads ``box_head.trunk`` (conv5) outputs.
        mask_chunk: gt masks converted to float at a time for the targets.
        class_nms: per-class NMS at inference, ``"auto"`` (grouped on a GPU, torchvision's on the
            CPU), ``"grouped"`` or ``"torchvision"``
            (:class:`~segzoo.models.roi_heads.postprocess.GroupedNMSPostprocess`).

    ``forward(features, proposals, image_shapes, targets)`` returns ``(detections, losses)`` like
    torchvision's: in training ``([], {"loss_classifier", "loss_box_reg", "loss_mask"})``, in eval
    per image ``{"boxes", "labels", "scores", "masks" (N, 1, M, M)}`` and ``{}``.
    """

    def __init__(self, *args, mask_roi_pool: nn.Module, mask_head: nn.Module, mask_predictor: nn.Module,
                 mask_loss: str = "sigmoid", class_agnostic_mask: bool = False, shared_box_trunk: bool = False,
                 mask_chunk: int = 32, **kwargs) -> None:
        super().__init__(*args, mask_roi_pool=mask_roi_pool, mask_head=mask_head,
                         mask_predictor=mask_predictor, **kwargs)
        if mask_loss not in ("sigmoid", "softmax"):
            raise ValueError(f"mask_loss must be 'sigmoid' or 'softmax', got {mask_loss!r}")
        if mask_loss == "softmax" and class_agnostic_mask:
            raise ValueError("a softmax mask loss competes across classes: it needs per-class masks "
                             "(class_agnostic_mask: false)")
        self.mask_loss_kind = mask_loss
        self.class_agnostic_mask = class_agnostic_mask
        self.shared_box_trunk = shared_box_trunk
        self.mask_chunk = mask_chunk

    def _mask_logits(self, features: dict[str, Tensor], boxes: list[Tensor],
                     image_shapes: list[tuple[int, int]]) -> Tensor:
        x = self.mask_roi_pool(features, boxes, image_shapes)
        if self.shared_box_trunk:
            x = self.box_head.trunk(x)
        return self.mask_predictor(self.mask_head(x))

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if self.training:
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_roi_pool(features, proposals, image_shapes)
        trunk = self.box_head.trunk(box_features) if self.shared_box_trunk else None
        box_features = trunk.mean((2, 3)) if trunk is not None else self.box_head(box_features)
        class_logits, box_regression = self.box_predictor(box_features)

        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            pos = [torch.where(lab > 0)[0] for lab in labels]
            mask_proposals = [p[i] for p, i in zip(proposals, pos)]
            pos_matched = [m[i] for m, i in zip(matched_idxs, pos)]
            if trunk is not None:  # C4: reuse the positives' conv5 maps
                offsets = torch.cumsum(torch.tensor([0] + [len(p) for p in proposals[:-1]]), 0).tolist()
                flat = torch.cat([i + o for i, o in zip(pos, offsets)])
                mask_logits = self.mask_predictor(self.mask_head(trunk[flat]))
            else:
                mask_logits = self._mask_logits(features, mask_proposals, image_shapes)
            loss = mask_loss(mask_logits, mask_proposals, [t["masks"] for t in targets],
                             [t["labels"] for t in targets], pos_matched, kind=self.mask_loss_kind,
                             class_agnostic=self.class_agnostic_mask, chunk=self.mask_chunk)
            return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg, "loss_mask": loss}

        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        result = [{"boxes": b, "labels": lab, "scores": s} for b, s, lab in zip(boxes, scores, labels)]
        mask_logits = self._mask_logits(features, boxes, image_shapes)
        probs = mask_probabilities(mask_logits, labels, kind=self.mask_loss_kind,
                                   class_agnostic=self.class_agnostic_mask)
        for r, p in zip(result, probs):
            r["masks"] = p
        return result, {}
