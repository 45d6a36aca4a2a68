"""DeepLab v2 (Chen, Papandreou, Kokkinos, Murphy & Yuille, TPAMI 2017).

ResNet-101 with conv4_x / conv5_x atrous (dilation 2 and 4; output stride 8), ASPP-L: four
parallel 3x3 atrous convs (rates 6, 12, 18, 24) each predicting K class scores, **summed**, then
bilinear x8 upsampling. Left out: the fully connected CRF post-processing and multi-scale input
fusion (MSC). Reported: 79.7 mIoU on PASCAL VOC 2012 test (with CRF and COCO pretraining).
"""

from __future__ import annotations

from typing import Any, Literal

from segzoo.models.segmentors.compose import Spec, aux_spec, compose, preset_backbone, renamed
from segzoo.models.segmentors.encoder_decoder import EncoderDecoder
from segzoo.registry import MODELS

_PAPER = ("Chen et al., DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, "
          "Atrous Convolution, and Fully Connected CRFs, TPAMI 2017")


@MODELS.register("deeplabv2", task="semantic", paper=_PAPER)
@renamed(aux_head="auxiliary_head")
def deeplabv2(
    *,
    num_classes: int = 21,
    backbone: Spec = "resnet101",
    weights_backbone: str | None = None,
    output_stride: Literal[8, 16, 32] = 8,
    atrous_rates: tuple[int, ...] = (6, 12, 18, 24),
    branch_channels: int | None = None,
    auxiliary_head: bool | dict[str, Any] | None = False,
    aux_loss_weight: float = 0.4,
) -> EncoderDecoder:
    """DeepLab v2 with ASPP-L.

    Args:
        num_classes: K.
        backbone: a registered backbone with ``output_stride`` (paper: ``resnet101``).
            Or ``{name: ..., **options}`` for its other options, e.g. a ``tu-`` backbone's
            ``timm_kwargs`` (the model's own arguments, like ``output_stride``, stay here).
        weights_backbone: path or URL of backbone weights.
        output_stride: 8 (paper).
        atrous_rates: (6, 12, 18, 24) is ASPP-L, (2, 4, 8, 12) ASPP-S (paper sec. 4.1).
        branch_channels: ``None``: one 3x3 conv -> K per branch (the ResNet-101 model); an int
            (1024 in the paper) gives the VGG-16 version's fc6/fc7/fc8 branches.
        auxiliary_head: ``True``: an FCN head on the second-deepest feature (not in the paper);
            or any head spec. ``aux_head`` is its deprecated old name.
        aux_loss_weight: its loss weight.

    Returns:
        An :class:`EncoderDecoder`: images (B, 3, H, W), H, W >= output_stride -> logits
        (B, K, H, W).
    """
    head = {"name": "aspp_v2_head", "atrous_rates": atrous_rates, "branch_channels": branch_channels}
    backbone_spec = preset_backbone(backbone, model="deeplabv2", output_stride=output_stride)
    return compose(num_classes=num_classes, backbone=backbone_spec,
                   decode_head=head, weights_backbone=weights_backbone, name="deeplabv2",
                   auxiliary_head=aux_spec(auxiliary_head, loss_weight=aux_loss_weight))
