"""Mask R-CNN (He, Gkioxari, Dollár & Girshick, ICCV 2017) on any registered backbone.

Assembled from torchvision's detection components: :class:`RCNNTransform` (torchvision's
GeneralizedRCNNTransform), ``AnchorGenerator``, ``RPNHead`` + ``RegionProposalNetwork``,
``MultiScaleRoIAlign`` (or :class:`~segzoo.models.roi_heads.MultiScaleRoIPool`), ``TwoMLPHead`` +
``FastRCNNPredictor``, ``MaskRCNNHeads`` + ``MaskRCNNPredictor`` inside
:class:`~segzoo.models.roi_heads.MaskRCNNRoIHeads`, and an :class:`~segzoo.models.necks.FPN`.

Two variants (paper sec. 3, Fig. 4):

* ``"fpn"``: backbone -> FPN (P2..P5 + P6 for the RPN) -> RPN with one anchor size per level
  (8 x stride: 32..512 px for ResNet) x 3 aspect ratios -> 7x7 RoIAlign -> two fc 1024 -> class and
  box; 14x14 RoIAlign -> four 3x3 conv 256 -> 2x deconv -> 28x28 x K masks.
* ``"c4"``: ResNet up to conv4 (stride 16) -> RPN with 5 anchor sizes (32..512) x 3 ratios on C4 ->
  14x14 RoIAlign -> conv5 (``layer4``, stride 2) -> 7x7 x 2048: average pooled for class and box,
  2x deconv -> 14x14 x K masks.

The model follows torchvision's detection contract; see :class:`MaskRCNN`.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from segzoo.models.backbones.base import Backbone


class MaskRCNN(nn.Module):
    """Mask R-CNN with torchvision's detection API.

    ``model(images, targets)`` in training mode: ``images`` is a list of (3, H_i, W_i) float tensors
    in 0..1 (**not** normalised: the model normalises them itself with ``transform.image_mean/std``,
    ImageNet's by default, as torchvision's models do), ``targets`` a list of dicts with ``boxes``
    (N_i, 4) float XYXY in pixels (positive width and height), ``labels`` (N_i,) int64 in
    1..num_classes-1 and ``masks`` (N_i, H_i, W_i) uint8. Returns the loss dict ``loss_classifier``,
    ``loss_box_reg``, ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg`` (scalars).

    ``model(images)`` in eval mode returns per image ``{"boxes": (N, 4) float XYXY in the input
    image's pixels, "labels": (N,) int64, "scores": (N,) float, "masks": (N, 1, H, W) float
    probabilities}`` (threshold masks at 0.5 for binary ones), at most ``box_detections_per_img``.

    ``num_classes`` counts the background (label 0), as torchvision does: 91 for torchvision's COCO
    checkpoints, 81 for COCO's 80 categories relabelled 1..80, 4 for shapes.

    Raises:
        ValueError: images that are not (3, H, W) floats, missing targets in training, or target
            boxes of zero width or height (drop them first, as segzoo's engine does).
    """

    task = "instance"
    normalizes_input = True  # takes 0..1 images (configs: data.mean [0, 0, 0], data.std [1, 1, 1])
    loss_weights = {"loss_classifier": 1.0, "loss_box_reg": 1.0, "loss_mask": 1.0,
                    "loss_objectness": 1.0, "loss_rpn_box_reg": 1.0}

    def __init__(self, backbone: Backbone, neck: nn.Module | None, rpn: RegionProposalNetwork,
                 roi_heads: nn.Module, transform: nn.Module, *, num_classes: int, feature_index: int | None = None,
                 variant: str = "fpn") -> None:
        super().__init__()
        self.transform, self.backbone, self.neck = transform, backbone, neck
        self.rpn, self.roi_heads = rpn, roi_heads
        self.num_classes = num_classes
        self.feature_index = feature_index  # C4: the backbone feature the RPN and RoIs use
        self.variant = variant

    def features(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """The named feature maps the RPN and RoI heads read (FPN levels, or ``{"0": C4}``)."""
        feats = self.backbone(x)
        if self.neck is not None:
            return self.neck(feats)
        return OrderedDict([("0", feats[self.feature_index])])

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if isinstance(images, Tensor) and images.ndim == 4:
            images = list(images)
        if not isinstance(images, (list, tuple)) or not all(
                isinstance(im, Tensor) and im.ndim == 3 and im.shape[0] == 3 and im.is_floating_point()
                for im in images):
            raise ValueError("Mask R-CNN takes a list of (3, H, W) float images in 0..1")
        if self.training:
            if targets is None or len(targets) != len(images):
                raise ValueError("Mask R-CNN in training mode needs one target dict per image")
            for i, t in enumerate(targets):
                b = t["boxes"]
                bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
                if bool(bad.any()):
                    raise ValueError(f"target {i}: box {b[bad][0].tolist()} has zero width or height; "
                                     "drop degenerate boxes before training")
        original_sizes = [(im.shape[-2], im.shape[-1]) for im in images]  # traced sizes when exporting
        image_list, targets = self.transform(list(images), targets)
        features = self.features(image_list.tensors)
        proposals, rpn_losses = self.rpn(image_list, features, targets)
        detections, roi_losses = self.roi_heads(features, proposals, image_list.image_sizes, targets)
        if self.training:
            return {**roi_losses, **rpn_losses}
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)


def default_anchor_sizes(strides: tuple[int, ...], variant: str) -> list[int]:
    """FPN: one size per level, 8 x its stride (ResNet-FPN: 32, 64, 128, 256, 512, torchvision's);
    C4: the paper's 5 sizes 32..512 on the single stride-16 level."""
    if variant == "c4":
        return [32, 64, 128, 256, 512]
    return [8 * s for s in strides]


def build_rpn(in_channels: int, anchor_sizes: list[int], aspect_ratios: list[float], levels: int, *,
              per_level: bool, pre_nms_top_n: dict[str, int], post_nms_top_n: dict[str, int],
              nms_thresh: float, batch_size_per_image: int) -> RegionProposalNetwork:
    """torchvision's RPN: a shared 3x3 conv + objectness and box deltas per anchor; anchors of
    ``anchor_sizes`` (one per level when ``per_level``, else all on the single level) x ratios.

    Raises:
        ValueError: ``per_level`` with a number of sizes other than ``levels``.
    """
    if per_level:
        if len(anchor_sizes) != levels:
            raise ValueError(f"anchor_sizes needs one size per pyramid level ({levels}), got {anchor_sizes}")
        sizes = tuple((int(s),) for s in anchor_sizes)
    else:
        sizes = (tuple(int(s) for s in anchor_sizes),)
    ratios = (tuple(float(r) for r in aspect_ratios),) * len(sizes)
    generator = AnchorGenerator(sizes, ratios)
    head = RPNHead(in_channels, generator.num_anchors_per_location()[0])
    return RegionProposalNetwork(generator, head, fg_iou_thresh=0.7, bg_iou_thresh=0.3,
                                 batch_size_per_image=batch_size_per_image, positive_fraction=0.5,
                                 pre_nms_top_n=pre_nms_top_n, post_nms_top_n=post_nms_top_n,
                                 nms_thresh=nms_thresh)

