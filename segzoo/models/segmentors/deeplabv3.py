"""DeepLab v3 (Chen, Papandreou, Schroff & Adam, "Rethinking Atrous Convolution for Semantic
Image Segmentation", arXiv 1706.05587, 2017).

Dilated ResNet at output stride 16 (train) or 8, multi-grid (1, 2, 4) on block4 (sec. 3.2),
ASPP with image pooling (sec. 3.3; rates (6, 12, 18) at OS 16, doubled at OS 8), concatenation,
1x1 projection 256 + BN + ReLU, 1x1 -> K, bilinear upsampling to the input. Reported: 85.7 mIoU
on PASCAL VOC 2012 test (ResNet-101, COCO + JFT pretraining 86.9).
"""

from __future__ import annotations

from typing import Any, Literal

from segzoo.models.layers import scaled_rates
from segzoo.models.segmentors.compose import Norm, Spec, aux_spec, compose, preset_backbone, renamed
from segzoo.models.segmentors.encoder_decoder import EncoderDecoder
from segzoo.registry import MODELS

_PAPER = "Chen et al., Rethinking Atrous Convolution for Semantic Image Segmentation, 2017"


@MODELS.register("deeplabv3", task="semantic", paper=_PAPER)
@renamed(aux_head="auxiliary_head")
def deeplabv3(
    *,
    num_classes: int = 21,
    backbone: Spec = "resnet101",
    weights_backbone: str | None = None,
    output_stride: Literal[8, 16, 32] = 16,
    multi_grid: tuple[int, ...] | None = None,
    atrous_rates: tuple[int, ...] | None = None,
    channels: int = 256,
    image_pooling: bool = True,
    separable: bool = False,
    bottleneck: bool = False,
    aspp_dropout: float = 0.1,
    norm: Norm | None = "bn",
    auxiliary_head: bool | dict[str, Any] | None = False,
    aux_loss_weight: float = 0.4,
) -> EncoderDecoder:
    """DeepLab v3.

    Args:
        num_classes: K.
        backbone: a registered backbone with ``output_stride`` (``resnet101``/``50``/``18``,
            ``mobilenet_v2``, ``xception65``, ``tu-<timm name>``).
            Or ``{name: ..., **options}`` for its other options, e.g. a ``tu-`` backbone's
            ``timm_kwargs`` (the model's own arguments, like ``output_stride``, stay here).
        weights_backbone: path or URL of backbone weights.
        output_stride: 16 (paper's training setting) or 8 (its best inference setting); 32.
        multi_grid: layer4 unit rates relative to its dilation, e.g. (1, 2, 4) (ResNet only).
        atrous_rates: ASPP rates; default (6, 12, 18) scaled by 16 / output_stride.
        channels: ASPP width (256).
        image_pooling: ASPP's image-level branch (paper: on; sec. 4.3 ablates it).
        separable: depthwise separable atrous branches.
        bottleneck: torchvision's extra 3x3 conv after the ASPP (off in the paper).
        aspp_dropout: after the ASPP projection (0.1; torchvision 0.5).
        norm: head normalisation (``"gn"`` or ``None`` train at batch size 1).
        auxiliary_head: ``True``: an FCN head on the second-deepest feature (torchvision
            ``aux_loss``); or any head spec. ``aux_head`` is its deprecated old name.
        aux_loss_weight: its loss weight.

    Returns:
        An :class:`EncoderDecoder`: images (B, 3, H, W), H, W >= output_stride -> logits
        (B, K, H, W). In training, BatchNorm heads need batches of >= 2 (image pooling).
    """
    rates = tuple(atrous_rates) if atrous_rates is not None else scaled_rates(output_stride)
    head = {"name": "aspp_head", "channels": channels, "atrous_rates": rates,
            "image_pooling": image_pooling, "separable": separable, "bottleneck": bottleneck,
            "aspp_dropout": aspp_dropout, "norm": norm}
    backbone_spec = preset_backbone(backbone, model="deeplabv3", output_stride=output_stride,
                                    multi_grid=multi_grid)
    return compose(num_classes=num_classes, backbone=backbone_spec, decode_head=head,
                   weights_backbone=weights_backbone, name="deeplabv3",
                   auxiliary_head=aux_spec(auxiliary_head, norm=norm, loss_weight=aux_loss_weight))


def _torchvision_deeplabv3(backbone: str, num_classes: int, aux_loss: bool,
                           weights_backbone: str | None) -> EncoderDecoder:
    return deeplabv3(num_classes=num_classes, backbone=backbone, weights_backbone=weights_backbone,
                     output_stride=8, bottleneck=True, aspp_dropout=0.5, auxiliary_head=aux_loss)


def deeplabv3_resnet50(*, num_classes: int = 21, aux_loss: bool = False,
                       weights_backbone: str | None = None) -> EncoderDecoder:
    """torchvision's ``deeplabv3_resnet50(num_classes=..., aux_loss=...)``, parameter for
    parameter: OS 8, rates (12, 24, 36), ASPP dropout 0.5, the extra 3x3 conv after the ASPP, no
    multi-grid. Its checkpoints load through :func:`segzoo.models.convert.from_torchvision`."""
    return _torchvision_deeplabv3("resnet50", num_classes, aux_loss, weights_backbone)


def deeplabv3_resnet101(*, num_classes: int = 21, aux_loss: bool = False,
                        weights_backbone: str | None = None) -> EncoderDecoder:
    """torchvision's ``deeplabv3_resnet101`` (see :func:`deeplabv3_resnet50`)."""
    return _torchvision_deeplabv3("resnet101", num_classes, aux_loss, weights_backbone)
