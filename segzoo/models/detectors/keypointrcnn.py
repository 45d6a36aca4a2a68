"""Keypoint R-CNN (He, Gkioxari, Dollár & Girshick, Mask R-CNN, ICCV 2017, sec. 5 "Mask R-CNN for
Human Pose Estimation") on any registered backbone with the FPN neck.

The detector is segzoo's Mask R-CNN FPN variant (backbone -> FPN P2..P6 -> RPN -> 7x7 RoIAlign ->
two fc -> class and box) whose second branch predicts keypoints instead of masks: each keypoint is
a one-hot m x m mask; 14x14 RoIAlign -> eight 3x3 512-d convs -> 2x deconv -> 2x bilinear
upsampling -> K x 56 x 56 logits, trained with a softmax cross-entropy over the m^2 positions of
each labelled keypoint (visibility > 0). Everything past the neck is torchvision's:
``RoIHeads`` with ``KeypointRCNNHeads`` + ``KeypointRCNNPredictor`` and torchvision's
``keypointrcnn_loss``; inference is the paper's heatmap argmax, decoded as torchvision's
``keypointrcnn_inference`` with fewer host syncs (:mod:`segzoo.models.roi_heads.keypoint_decode`).

Keys and parameter counts equal torchvision's ``keypointrcnn_resnet50_fpn`` with ``backbone.body``
as ``backbone`` and ``backbone.fpn`` as ``neck`` (see :func:`segzoo.models.convert.from_torchvision`,
``arch="keypointrcnn"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torchvision
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign

from segzoo.constants import IMAGENET_MEAN, IMAGENET_STD
from segzoo.models.detectors.builders import detector_backbone
from segzoo.models.detectors.maskrcnn import MaskRCNN, build_rpn, default_anchor_sizes
from segzoo.models.detectors.transform import RCNNTransform
from segzoo.models.necks.fpn import FPN
from segzoo.models.roi_heads.keypoint_decode import keypoints_from_heatmaps
from segzoo.models.roi_heads.postprocess import GroupedNMSPostprocess
from segzoo.registry import MODELS

PAPER = "He et al., Mask R-CNN, ICCV 2017 (sec. 5, human pose estimation)"


def check_keypoint_targets(targets: Sequence[dict[str, Tensor]], num_keypoints: int) -> None:
    """Raise ValueError unless every target has ``keypoints`` (N, K, 3) with K = ``num_keypoints``
    and N = its number of boxes."""
    for i, t in enumerate(targets):
        kp = t.get("keypoints")
        if kp is None:
            raise ValueError(f"target {i} has no 'keypoints' (N, {num_keypoints}, 3); a keypoint model "
                             "trains on data with keypoints (shapes keypoints: true, coco keypoints: true)")
        n = len(t["boxes"])
        if kp.ndim != 3 or tuple(kp.shape) != (n, num_keypoints, 3):
            raise ValueError(f"target {i}: keypoints are {tuple(kp.shape)}, expected ({n}, {num_keypoints}, 3) "
                             f"(x, y, visibility per keypoint); model.num_keypoints must equal the data's")


class KeypointRCNN(MaskRCNN):
    """Keypoint R-CNN with torchvision's detection API (the contract of :class:`MaskRCNN`).

    Training: ``model(images, targets)`` where each target also has ``keypoints`` (N_i, K, 3) float
    ``[x, y, visibility]`` in the image's pixels (visibility 0: not labelled, ignored by the loss;
    1 or 2: labelled); returns ``loss_classifier``, ``loss_box_reg``, ``loss_keypoint``,
    ``loss_objectness``, ``loss_rpn_box_reg``.

    Eval: per image ``{"boxes" (N, 4), "labels" (N,), "scores" (N,), "keypoints" (N, K, 3) float
    [x, y, 1] in the input image's pixels, "keypoints_scores" (N, K) heatmap logits}``.

    Raises:
        ValueError: the errors of :class:`MaskRCNN`, and training targets without ``keypoints`` of
            shape (N, num_keypoints, 3).
    """

    loss_weights = {"loss_classifier": 1.0, "loss_box_reg": 1.0, "loss_keypoint": 1.0,
                    "loss_objectness": 1.0, "loss_rpn_box_reg": 1.0}
    key_metric = "kp_AP"

    def __init__(self, *args, num_keypoints: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.num_keypoints = num_keypoints

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if self.training and targets is not None:
            check_keypoint_targets(targets, self.num_keypoints)
        return super().forward(images, targets)


class KeypointPredictor(KeypointRCNNPredictor):
    """torchvision's ``KeypointRCNNPredictor`` (deconv + 2x bilinear upsampling to K x 56 x 56)
    whose (R, K, 56, 56) logits are returned contiguous: torchvision's ``keypointrcnn_loss`` (and
    ``keypointrcnn_inference`` when traced) call ``.view()`` on them, which fails on the channels_last layout
    of a model converted with ``.to(memory_format=torch.channels_last)``. Same parameters."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).contiguous()


class KeypointRoIHeads(GroupedNMSPostprocess, RoIHeads):
    """torchvision's ``RoIHeads`` with a keypoint branch; at inference its per-class NMS grouped
    on a GPU (:class:`~segzoo.models.roi_heads.postprocess.GroupedNMSPostprocess`; ``class_nms``)
    and its keypoints decoded with one host sync per image
    (:func:`~segzoo.models.roi_heads.keypoint_decode.keypoints_from_heatmaps`, equal to
    torchvision's ``keypointrcnn_inference``). Training and tracing: torchvision's ``forward``."""

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if self.training or torchvision._is_tracing():
            return super().forward(features, proposals, image_shapes, targets)
        x = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(x)
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        x = self.keypoint_predictor(self.keypoint_head(self.keypoint_roi_pool(features, boxes, image_shapes)))
        keypoints, keypoint_scores = keypoints_from_heatmaps(x, boxes)
        return [{"boxes": b, "labels": lab, "scores": s, "keypoints": kp, "keypoints_scores": ks}
                for b, lab, s, kp, ks in zip(boxes, labels, scores, keypoints, keypoint_scores)], {}


def keypoint_branch(names: Sequence[str], in_channels: int, num_keypoints: int, *, head_dim: int = 512,
                    num_convs: int = 8, sampling_ratio: int = 2) -> dict[str, nn.Module]:
    """The paper's keypoint branch as torchvision's ``RoIHeads`` keyword arguments: 14x14 RoIAlign on
    the FPN levels ``names``, ``num_convs`` 3x3 convs of ``head_dim`` channels, deconv + 2x
    bilinear upsampling to K x 56 x 56."""
    return {"keypoint_roi_pool": MultiScaleRoIAlign(list(names), 14, sampling_ratio=sampling_ratio),
            "keypoint_head": KeypointRCNNHeads(in_channels, [head_dim] * num_convs),
            "keypoint_predictor": KeypointPredictor(head_dim, num_keypoints)}


def with_keypoint_head(model: MaskRCNN, num_keypoints: int = 17, *, head_dim: int = 512, num_convs: int = 8,
                       sampling_ratio: int = 2) -> MaskRCNN:
    """The paper's joint "mask + keypoint" Mask R-CNN (Table 4): ``model`` (an FPN
    :class:`MaskRCNN`) with its RoI heads replaced by
    :class:`~segzoo.models.roi_heads.keypoint_roi_heads.MaskKeypointRoIHeads` keeping every box and
    mask module and setting, plus a keypoint branch (:func:`keypoint_branch`). The model then also
    takes ``keypoints`` targets, returns ``loss_keypoint`` and predicts ``keypoints``.

    Raises:
        ValueError: a C4 model (the keypoint head reads FPN levels) or ``num_keypoints`` < 1.
    """
    from segzoo.models.roi_heads.keypoint_roi_heads import MaskKeypointRoIHeads

    if model.neck is None:
        raise ValueError("the keypoint head pools RoIs from the FPN levels; build maskrcnn with variant 'fpn'")
    if num_keypoints < 1:
        raise ValueError(f"num_keypoints must be >= 1, got {num_keypoints}")
    rh = model.roi_heads
    model.roi_heads = MaskKeypointRoIHeads(
        rh.box_roi_pool, rh.box_head, rh.box_predictor, rh.proposal_matcher.high_threshold,
        rh.proposal_matcher.low_threshold, rh.fg_bg_sampler.batch_size_per_image, rh.fg_bg_sampler.positive_fraction,
        rh.box_coder.weights, rh.score_thresh, rh.nms_thresh, rh.detections_per_img,
        mask_roi_pool=rh.mask_roi_pool, mask_head=rh.mask_head, mask_predictor=rh.mask_predictor,
        mask_loss=rh.mask_loss_kind, class_agnostic_mask=rh.class_agnostic_mask, mask_chunk=rh.mask_chunk,
        class_nms=rh.class_nms,
        **keypoint_branch(model.neck.featmap_names, model.neck.out_channels, num_keypoints, head_dim=head_dim,
                          num_convs=num_convs, sampling_ratio=sampling_ratio))
    model.loss_weights = {**type(model).loss_weights, "loss_keypoint": 1.0}
    model.num_keypoints = num_keypoints
    return model


@MODELS.register("keypointrcnn", task="instance", paper=PAPER)
def keypointrcnn(
    *,
    num_classes: int = 2,
    num_keypoints: int = 17,
    backbone: str | dict[str, Any] = "resnet50",
    weights_backbone: str | None = None,
    frozen_bn: bool | None = None,
    trainable_backbone_layers: int | None = None,
    fpn_channels: int = 256,
    box_head_dim: int = 1024,
    keypoint_head_dim: int = 512,
    keypoint_head_convs: int = 8,
    min_size: int | list[int] = (640, 672, 704, 736, 768, 800),
    max_size: int = 1333,
    image_mean: list[float] = IMAGENET_MEAN,
    image_std: list[float] = IMAGENET_STD,
    anchor_sizes: list[int] | None = None,
    aspect_ratios: list[float] = (0.5, 1.0, 2.0),
    rpn_pre_nms_top_n_train: int = 2000,
    rpn_pre_nms_top_n_test: int = 1000,
    rpn_post_nms_top_n_train: int = 2000,
    rpn_post_nms_top_n_test: int = 1000,
    rpn_nms_thresh: float = 0.7,
    rpn_batch_size_per_image: int = 256,
    box_batch_size_per_image: int = 512,
    box_positive_fraction: float = 0.25,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
    sampling_ratio: int = 2,
    class_nms: Literal["auto", "grouped", "torchvision"] = "auto",
) -> KeypointRCNN:
    """Keypoint R-CNN, FPN variant (see :mod:`segzoo.models.detectors.keypointrcnn`).

    Args:
        num_classes: classes **including the background** (2 for COCO persons, torchvision's).
        num_keypoints: K, keypoints per instance (17 for COCO persons); one heatmap each, shared by
            every class (torchvision's and the paper's class-agnostic keypoint head).
        backbone: any registered backbone with at least two levels of stride >= 4, by name or
            as a part with options (``{"name": "resnet18", ...}``), as :func:`~segzoo.models.maskrcnn`.
        weights_backbone, frozen_bn, trainable_backbone_layers: as :func:`~segzoo.models.maskrcnn`.
        fpn_channels, box_head_dim: widths of the FPN levels (256) and box fc layers (1024).
        keypoint_head_dim, keypoint_head_convs: the keypoint head's 3x3 convs (the paper: 8 x 512).
        min_size, max_size: the model's own resize (torchvision's; a list: one picked at random in
            training, the last at test; default torchvision's 640..800 multi-scale training).
        image_mean, image_std: the model's own normalisation of its 0..1 input images.
        anchor_sizes: one size per pyramid level (default 8 x stride).
        aspect_ratios, rpn_*, box_*, sampling_ratio, class_nms: as :func:`~segzoo.models.maskrcnn`.

    Raises:
        ValueError: ``num_keypoints`` < 1, ``class_nms`` unknown, ``trainable_backbone_layers`` outside 0..5 or for a
            non-ResNet backbone, ``anchor_sizes`` not matching the pyramid levels.
    """
    if num_keypoints < 1:
        raise ValueError(f"num_keypoints must be >= 1, got {num_keypoints}")
    net, backbone = detector_backbone(backbone, "keypointrcnn", weights_backbone, frozen_bn,
                                      trainable_backbone_layers)

    neck = FPN(net.out_channels, net.out_strides, out_channels=fpn_channels)
    names = neck.featmap_names
    sizes = list(anchor_sizes) if anchor_sizes is not None else default_anchor_sizes(neck.strides, "fpn")
    rpn = build_rpn(fpn_channels, sizes, list(aspect_ratios), len(neck.strides), per_level=True,
                    pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
                    post_nms_top_n={"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
                    nms_thresh=rpn_nms_thresh, batch_size_per_image=rpn_batch_size_per_image)
    roi_heads = KeypointRoIHeads(
        MultiScaleRoIAlign(names, 7, sampling_ratio=sampling_ratio),
        TwoMLPHead(fpn_channels * 7 * 7, box_head_dim), FastRCNNPredictor(box_head_dim, num_classes),
        0.5, 0.5, box_batch_size_per_image, box_positive_fraction, None,
        box_score_thresh, box_nms_thresh, box_detections_per_img,
        **keypoint_branch(names, fpn_channels, num_keypoints, head_dim=keypoint_head_dim,
                          num_convs=keypoint_head_convs, sampling_ratio=sampling_ratio),
        class_nms=class_nms)
    sizes_in = tuple(min_size) if isinstance(min_size, Sequence) else (int(min_size),)
    transform = RCNNTransform(sizes_in, max_size, list(image_mean), list(image_std))
    return KeypointRCNN(net, neck, rpn, roi_heads, transform, num_classes=num_classes, variant="fpn",
                        num_keypoints=num_keypoints)
