"""The joint mask + keypoint second stage of Mask R-CNN (He et al., ICCV 2017, sec. 5 and Table 4:
"Mask R-CNN, mask + keypoint", 63.1 keypoint AP against 62.7 for keypoint-only on COCO test-dev).

:class:`MaskKeypointRoIHeads` is segzoo's :class:`~segzoo.models.roi_heads.MaskRCNNRoIHeads` (box
branch and configurable mask branch) plus torchvision's keypoint branch on the same sampled RoIs:
the positive RoIs of the box sampling feed both the mask and the keypoint heads, whose losses are
torchvision's ``keypointrcnn_loss`` (softmax over the 56 x 56 positions of each labelled keypoint)
and inference the heatmap argmax (torchvision's ``keypointrcnn_inference``, here with one host
sync per image: :mod:`segzoo.models.roi_heads.keypoint_decode`). Build the keypoint modules with
:func:`segzoo.models.detectors.keypointrcnn.keypoint_branch` and pass them as keywords.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.roi_heads import keypointrcnn_loss

from segzoo.models.roi_heads.keypoint_decode import keypoints_from_heatmaps
from segzoo.models.roi_heads.mask_roi_heads import MaskRCNNRoIHeads


class MaskKeypointRoIHeads(MaskRCNNRoIHeads):
    """``MaskRCNNRoIHeads(*args, keypoint_roi_pool=..., keypoint_head=..., keypoint_predictor=...,
    **mask_options)``.

    ``forward(features, proposals, image_shapes, targets)``: in training the targets also carry
    ``keypoints`` (N, K, 3) and the losses add ``loss_keypoint``; in eval each detection dict adds
    ``keypoints`` (N, K, 3) ``[x, y, 1]`` and ``keypoints_scores`` (N, K).

    Raises:
        ValueError: no keypoint branch given.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.has_keypoint():
            raise ValueError("MaskKeypointRoIHeads needs keypoint_roi_pool, keypoint_head and keypoint_predictor")
        self._sampled: tuple | None = None

    def select_training_samples(self, proposals, targets):
        out = super().select_training_samples(proposals, targets)
        self._sampled = out  # the keypoint branch trains on the same positives as the mask branch
        return out

    def _keypoint_logits(self, features: dict[str, Tensor], boxes: list[Tensor],
                         image_shapes: list[tuple[int, int]]) -> Tensor:
        x = self.keypoint_roi_pool(features, boxes, image_shapes)
        return self.keypoint_predictor(self.keypoint_head(x))

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        result, losses = super().forward(features, proposals, image_shapes, targets)
        if self.training:
            sampled, matched, labels, _ = self._sampled
            self._sampled = None
            pos = [torch.where(lab > 0)[0] for lab in labels]
            boxes = [p[i] for p, i in zip(sampled, pos)]
            logits = self._keypoint_logits(features, boxes, image_shapes)
            losses["loss_keypoint"] = keypointrcnn_loss(logits, boxes, [t["keypoints"] for t in targets],
                                                        [m[i] for m, i in zip(matched, pos)])
            return result, losses
        boxes = [r["boxes"] for r in result]
        keypoints, scores = keypoints_from_heatmaps(self._keypoint_logits(features, boxes, image_shapes), boxes)
        for r, kp, sc in zip(result, keypoints, scores):
            r["keypoints"], r["keypoints_scores"] = kp, sc
        return result, losses
