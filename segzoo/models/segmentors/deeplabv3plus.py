"""DeepLab v3+ (Chen, Zhu, Papandreou, Schroff & Adam, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV 2018).

Encoder: DeepLab v3 (ASPP, output stride 16). Decoder (sec. 3.1): encoder output upsampled to
the stride-4 low-level feature (reduced to 48 channels by 1x1 conv + BN + ReLU), concatenated, two
3x3 convs of 256, 1x1 -> K, bilinear x4. Depthwise separable convs in ASPP and decoder (on by
default, the paper's best). Backbones: modified aligned Xception (``xception65``), ResNet, or
MobileNetV2 (the mobile variant). Reported: 89.0 mIoU VOC 2012 test (JFT), 82.1 Cityscapes test.
"""

from __future__ import annotations

from typing import Any, Literal

from segzoo.models.layers import scaled_rates
from segzoo.models.segmentors.compose import Norm, Spec, aux_spec, compose, preset_backbone, renamed
from segzoo.models.segmentors.encoder_decoder import EncoderDecoder
from segzoo.registry import MODELS

_PAPER = ("Chen et al., Encoder-Decoder with Atrous Separable Convolution for Semantic Image "
          "Segmentation, ECCV 2018")


@MODELS.register("deeplabv3plus", task="semantic", paper=_PAPER)
@renamed(aux_head="auxiliary_head")
def deeplabv3plus(
    *,
    num_classes: int = 21,
    backbone: Spec = "resnet101",
    weights_backbone: str | None = None,
    output_stride: Literal[8, 16, 32] = 16,
    multi_grid: tuple[int, ...] | None = None,
    atrous_rates: tuple[int, ...] | None = None,
    channels: int = 256,
    low_level_channels: int = 48,
    separable: bool = True,
    aspp_dropout: float = 0.1,
    norm: Norm | None = "bn",
    auxiliary_head: bool | dict[str, Any] | None = False,
    aux_loss_weight: float = 0.4,
) -> EncoderDecoder:
    """DeepLab v3+.

    Args:
        num_classes: K.
        backbone: a registered backbone with ``output_stride`` and a stride-4 feature
            (``xception65``, ``resnet101``, ``mobilenet_v2``, ``tu-<timm name>``).
            Or ``{name: ..., **options}`` for its other options, e.g. a ``tu-`` backbone's
            ``timm_kwargs`` (the model's own arguments, like ``output_stride``, stay here).
        weights_backbone: path or URL of backbone weights (e.g.
            ``weights/mobilenet_v2_imagenet_features.safetensors``).
        output_stride: 16 (paper) or 8.
        multi_grid: layer4 unit rates (ResNet only).
        atrous_rates: ASPP rates; default (6, 12, 18) scaled by 16 / output_stride.
        channels: ASPP and decoder width (256).
        low_level_channels: the low-level projection (48).
        separable: depthwise separable convs in ASPP and decoder.
        aspp_dropout: after the ASPP projection.
        norm: head normalisation (``"gn"`` or ``None`` train at batch size 1).
        auxiliary_head: ``True``: an FCN head on the second-deepest feature; or any head spec.
            ``aux_head`` is its deprecated old name.
        aux_loss_weight: its loss weight.

    Returns:
        An :class:`EncoderDecoder`: images (B, 3, H, W), H, W >= output_stride -> logits
        (B, K, H, W).

    Raises:
        ValueError: a backbone without ``output_stride`` or without a stride-4 feature.
    """
    rates = tuple(atrous_rates) if atrous_rates is not None else scaled_rates(output_stride)
    head = {"name": "deeplabv3plus_head", "low_level_channels": low_level_channels,
            "channels": channels, "atrous_rates": rates, "separable": separable,
            "aspp_dropout": aspp_dropout, "norm": norm}
    backbone_spec = preset_backbone(backbone, model="deeplabv3plus", output_stride=output_stride,
                                    multi_grid=multi_grid)
    return compose(num_classes=num_classes, backbone=backbone_spec, decode_head=head,
                   weights_backbone=weights_backbone, name="deeplabv3plus",
                   auxiliary_head=aux_spec(auxiliary_head, norm=norm, loss_weight=aux_loss_weight))
