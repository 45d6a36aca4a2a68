"""The registered ``maskrcnn`` builder: backbone, neck, RPN and RoI heads from keyword options."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from segzoo.constants import IMAGENET_MEAN, IMAGENET_STD  # torchvision's detection normalisation
from segzoo.models.backbones.resnet import ResNetBackbone
from segzoo.models.detectors.maskrcnn import MaskRCNN, build_rpn, default_anchor_sizes
from segzoo.models.detectors.transform import RCNNTransform
from segzoo.models.necks.fpn import FPN
from segzoo.models.roi_heads import (
    MaskRCNNRoIHeads,
    MLPMaskHead,
    MLPMaskPredictor,
    MultiScaleRoIPool,
    Res5BoxHead,
)
from segzoo.models.segmentors.compose import build_backbone, parse_spec
from segzoo.registry import MODELS

PAPER = "He et al., Mask R-CNN, ICCV 2017"


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d below ``module`` by torchvision's FrozenBatchNorm2d with the same
    statistics and affine parameters (detection's usual choice with pretrained backbones and small
    batches); returns ``module``."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def freeze_resnet_stages(backbone: ResNetBackbone, trainable: int) -> None:
    """Keep the last ``trainable`` of the 5 ResNet stages (stem, layer1..layer4) trainable, as
    torchvision's ``trainable_backbone_layers``."""
    stages = [[backbone.conv1, backbone.bn1], [backbone.layer1], [backbone.layer2], [backbone.layer3],
              [backbone.layer4]]
    for stage in stages[:5 - trainable]:
        for m in stage:
            m.requires_grad_(False)


def detector_backbone(backbone: str | dict[str, Any], model: str, weights_backbone: str | None,
                      frozen_bn: bool | None, trainable_backbone_layers: int | None):
    """A detector's backbone, built and frozen as torchvision does: BatchNorm frozen when
    pretrained weights are given (or ``frozen_bn``), and a ResNet's first stages frozen
    (``trainable_backbone_layers``, default 3 with pretrained weights). Returns (backbone module,
    its name for messages).

    Raises:
        ValueError: ``trainable_backbone_layers`` outside 0..5 or for a non-ResNet backbone.
    """
    frozen = weights_backbone is not None if frozen_bn is None else frozen_bn
    net, _ = build_backbone(backbone, model=model, weights=weights_backbone)
    name, _ = parse_spec(backbone, key="backbone", model=model)
    if trainable_backbone_layers is not None:
        if not isinstance(net, ResNetBackbone) or not 0 <= trainable_backbone_layers <= 5:
            raise ValueError("trainable_backbone_layers takes 0..5 and applies to ResNet backbones; "
                             f"got {trainable_backbone_layers} for {name!r}")
    elif isinstance(net, ResNetBackbone) and weights_backbone is not None:
        trainable_backbone_layers = 3
    if frozen:
        freeze_batchnorm(net)
    if isinstance(net, ResNetBackbone) and trainable_backbone_layers is not None:
        freeze_resnet_stages(net, trainable_backbone_layers)
    return net, name


@MODELS.register("maskrcnn", task="instance", paper=PAPER)
def maskrcnn(
    *,
    num_classes: int = 91,
    backbone: str | dict[str, Any] = "resnet50",
    weights_backbone: str | None = None,
    variant: Literal["fpn", "c4"] = "fpn",
    roi_op: Literal["align", "pool"] = "align",
    mask_loss: Literal["sigmoid", "softmax"] = "sigmoid",
    mask_head: Literal["fcn", "mlp"] = "fcn",
    class_agnostic_mask: bool = False,
    frozen_bn: bool | None = None,
    trainable_backbone_layers: int | None = None,
    fpn_channels: int = 256,
    box_head_dim: int = 1024,
    mask_head_dim: int = 256,
    min_size: int | list[int] = 800,
    max_size: int = 1333,
    keep_size: bool = False,
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
    keypoint_head: bool = False,
    num_keypoints: int = 17,
) -> MaskRCNN:
    """Mask R-CNN (see :mod:`segzoo.models.detectors.maskrcnn` for the architecture and the contract).

    Args:
        num_classes: classes **including the background** (torchvision's convention; 91 for
            torchvision's COCO checkpoints; segzoo's configs take the dataset's count).
        backbone: any registered backbone (``resnet50``, ``mobilenet_v2``, ``tu-<timm name>``, ...)
            or ``{name: ..., **options}`` (e.g. ``{name: tu-resnet18, out_indices: [1, 2, 3, 4]}``);
            the C4 variant needs a ResNet.
        weights_backbone: backbone weights (path or URL), e.g. an ImageNet torchvision ResNet.
        variant: ``"fpn"`` (default; torchvision's ``maskrcnn_resnet50_fpn`` layout) or ``"c4"``.
        roi_op: ``"align"`` (RoIAlign, the paper's) or ``"pool"`` (RoIPool, the ablation's baseline,
            with the same level mapping).
        mask_loss: ``"sigmoid"`` (per-class binary masks, the paper's) or ``"softmax"``.
        mask_head: ``"fcn"`` (the paper's) or ``"mlp"`` (fc ``box_head_dim`` -> fc -> K x 28 x 28,
            the paper's fc 1024 -> 1024; FPN only).
        class_agnostic_mask: predict one mask per RoI instead of one per class.
        frozen_bn: BatchNorm of the backbone frozen (FrozenBatchNorm2d); default: frozen exactly
            when ``weights_backbone`` is given (torchvision's rule).
        trainable_backbone_layers: ResNet stages (of stem, layer1..layer4) left trainable, counted
            from the top; default 3 with ``weights_backbone``, else all 5 (torchvision's rule).
        fpn_channels, box_head_dim, mask_head_dim: widths of the FPN levels (256), the two box fc
            layers (1024) and the mask head's convs and deconv (256); smaller values make CPU-sized
            models.
        min_size, max_size: the model's own resize (torchvision's GeneralizedRCNNTransform): the
            shorter side to ``min_size`` (a random one of a list in training), the longer <= ``max_size``.
        keep_size: no resize at all: images are predicted at the size the data pipeline gives them
            (``min_size``/``max_size`` ignored; for small objects at a fixed scale, e.g. nuclei).
        image_mean, image_std: the model's own input normalisation (inputs are 0..1 images).
        anchor_sizes: FPN: one size per level (default 8 x stride: 32..512 on P2..P6 of a ResNet);
            C4: the sizes on the single level (default 32, 64, 128, 256, 512).
        aspect_ratios: height/width ratios of the anchors (0.5, 1, 2).
        rpn_*, box_*: torchvision's ``MaskRCNN`` arguments of the same names.
        sampling_ratio: RoIAlign sample points per bin side (2: the paper's 4 points per bin).
        class_nms: the per-class NMS of inference: ``"auto"`` (a few grouped NMS calls on a GPU,
            torchvision's ``batched_nms`` on the CPU), ``"grouped"`` or ``"torchvision"``; same
            detections up to the float32 rounding of IoUs at the NMS threshold
            (:mod:`segzoo.models.roi_heads.postprocess`).
        keypoint_head: add the paper's keypoint branch (section 5, "Mask R-CNN for Human Pose
            Estimation"; the joint mask + keypoint model of its Table 4) with ``num_keypoints``
            keypoints (FPN only; see :func:`segzoo.models.detectors.keypointrcnn.with_keypoint_head`).

    Raises:
        ValueError: the C4 variant on a non-ResNet backbone, ``mask_head="mlp"`` with C4, a softmax
            mask loss with class-agnostic masks, ``trainable_backbone_layers`` outside 0..5 or for
            a non-ResNet backbone, or ``anchor_sizes`` not matching the pyramid levels.
    """
    net, backbone = detector_backbone(backbone, "maskrcnn", weights_backbone, frozen_bn,
                                      trainable_backbone_layers)

    pool_cls = MultiScaleRoIAlign if roi_op == "align" else MultiScaleRoIPool
    pool_kw = {"sampling_ratio": sampling_ratio} if roi_op == "align" else {}
    mask_classes = 1 if class_agnostic_mask else num_classes
    if variant == "fpn":
        neck = FPN(net.out_channels, net.out_strides, out_channels=fpn_channels)
        channels, names, index = fpn_channels, neck.featmap_names, None
        sizes = list(anchor_sizes) if anchor_sizes is not None else default_anchor_sizes(neck.strides, variant)
        rpn_levels, per_level = len(neck.strides), True
        box_pool = pool_cls(names, 7, **pool_kw)
        box_head: nn.Module = TwoMLPHead(channels * 7 * 7, box_head_dim)
        box_predictor = FastRCNNPredictor(box_head_dim, num_classes)
        mask_pool = pool_cls(names, 14, **pool_kw)
        if mask_head == "fcn":
            m_head: nn.Module = MaskRCNNHeads(channels, [mask_head_dim] * 4, 1)
            m_pred: nn.Module = MaskRCNNPredictor(mask_head_dim, mask_head_dim, mask_classes)
        else:
            m_head, m_pred = MLPMaskHead(channels, 14, box_head_dim), MLPMaskPredictor(box_head_dim, mask_classes, 28)
        shared = False
    elif variant == "c4":
        if not isinstance(net, ResNetBackbone):
            raise ValueError(f"maskrcnn variant 'c4' uses a ResNet's conv5 stage as its RoI head; "
                             f"backbone {backbone!r} is not a ResNet (use variant 'fpn')")
        if mask_head != "fcn":
            raise ValueError("mask_head 'mlp' is the FPN ablation; the C4 variant's mask head is "
                             "conv5 + deconv (mask_head: fcn)")
        neck, index = None, 3  # layer3 = conv4, stride 16
        res5, net.layer4 = net.layer4, nn.Identity()  # conv5 moves into the RoI head
        channels, names = net.out_channels[3], ["0"]
        sizes = list(anchor_sizes) if anchor_sizes is not None else default_anchor_sizes((16,), variant)
        rpn_levels, per_level = 1, False
        box_pool = pool_cls(names, 14, **pool_kw)
        box_head = Res5BoxHead(res5, net.out_channels[4])
        box_predictor = FastRCNNPredictor(net.out_channels[4], num_classes)
        mask_pool = pool_cls(names, 14, **pool_kw)
        m_head, m_pred = nn.Identity(), MaskRCNNPredictor(net.out_channels[4], mask_head_dim, mask_classes)
        shared = True
    else:
        raise ValueError(f"maskrcnn variant must be 'fpn' or 'c4', got {variant!r}")

    rpn = build_rpn(channels, sizes, list(aspect_ratios), rpn_levels, per_level=per_level,
                    pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
                    post_nms_top_n={"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
                    nms_thresh=rpn_nms_thresh, batch_size_per_image=rpn_batch_size_per_image)
    roi_heads = MaskRCNNRoIHeads(
        box_pool, box_head, box_predictor, 0.5, 0.5, box_batch_size_per_image, box_positive_fraction, None,
        box_score_thresh, box_nms_thresh, box_detections_per_img,
        mask_roi_pool=mask_pool, mask_head=m_head, mask_predictor=m_pred, mask_loss=mask_loss,
        class_agnostic_mask=class_agnostic_mask, shared_box_trunk=shared, class_nms=class_nms)
    sizes_in = tuple(min_size) if isinstance(min_size, Sequence) else (int(min_size),)
    transform = RCNNTransform(sizes_in, max_size, list(image_mean), list(image_std), keep_size=keep_size)
    model = MaskRCNN(net, neck, rpn, roi_heads, transform, num_classes=num_classes, feature_index=index,
                     variant=variant)
    if keypoint_head:
        # imported here: keypointrcnn builds on this module
        from segzoo.models.detectors.keypointrcnn import with_keypoint_head

        model = with_keypoint_head(model, num_keypoints, sampling_ratio=sampling_ratio)
    return model
