"""PSPNet (Zhao, Shi, Qi, Wang & Jia, "Pyramid Scene Parsing Network", CVPR 2017).

A preset of :func:`~segzoo.models.segmentors.compose.compose`: dilated ResNet (output stride 8), pyramid pooling module (bins 1, 2, 3, 6; sec. 3.2), 3x3 conv 512,
dropout 0.1, 1x1 -> K; deep supervision (sec. 3.3): an auxiliary FCN head on res4 (ResNet layer3)
with loss weight 0.4, used in training only. Reported: 85.4 mIoU VOC 2012 test (COCO
pretraining), 80.2 Cityscapes test, 41.68 / 80.04 ADE20K val mIoU / pixel acc. (ResNet-50).
"""

from __future__ import annotations

from typing import Any, Literal

from segzoo.models.segmentors.compose import Norm, Spec, aux_spec, compose, preset_backbone, renamed
from segzoo.models.segmentors.encoder_decoder import EncoderDecoder
from segzoo.registry import MODELS

_PAPER = "Zhao et al., Pyramid Scene Parsing Network, CVPR 2017"


@MODELS.register("pspnet", task="semantic", paper=_PAPER)
@renamed(aux_head="auxiliary_head")
def pspnet(
    *,
    num_classes: int = 21,
    backbone: Spec = "resnet50",
    weights_backbone: str | None = None,
    output_stride: Literal[8, 16, 32] = 8,
    bins: tuple[int, ...] = (1, 2, 3, 6),
    channels: int = 512,
    ppm_channels: int | None = None,
    dropout: float = 0.1,
    norm: Norm | None = "bn",
    auxiliary_head: bool | dict[str, Any] | None = True,
    aux_loss_weight: float = 0.4,
) -> EncoderDecoder:
    """PSPNet.

    Args:
        num_classes: K.
        backbone: a registered backbone with ``output_stride`` (``resnet50``/``101``, ...).
            Or ``{name: ..., **options}`` for its other options, e.g. a ``tu-`` backbone's
            ``timm_kwargs`` (the model's own arguments, like ``output_stride``, stay here).
        weights_backbone: path or URL of backbone weights.
        output_stride: 8 (paper).
        bins: pyramid grid sizes (1, 2, 3, 6).
        channels: width of the 3x3 conv after the pyramid (512).
        ppm_channels: width of each pooled branch (default deepest channels / len(bins)).
        dropout: before the classifier (0.1).
        norm: head normalisation (``"gn"`` or ``None`` train at batch size 1).
        auxiliary_head: ``True``: the auxiliary FCN head on the second-deepest feature (paper:
            on); ``False``: none; or any head spec (``{name: psp_head, in_index: -2}``).
            ``aux_head`` is its deprecated old name.
        aux_loss_weight: its loss weight (0.4, paper sec. 3.3).

    Returns:
        An :class:`EncoderDecoder`: images (B, 3, H, W), H, W >= output_stride -> logits
        (B, K, H, W); in training ``{"out", "aux"}`` weighted by ``model.loss_weights``.
    """
    head = {"name": "psp_head", "bins": bins, "channels": channels, "ppm_channels": ppm_channels,
            "dropout": dropout, "norm": norm}
    backbone_spec = preset_backbone(backbone, model="pspnet", output_stride=output_stride)
    return compose(num_classes=num_classes, backbone=backbone_spec,
                   decode_head=head, weights_backbone=weights_backbone, name="pspnet",
                   auxiliary_head=aux_spec(auxiliary_head, norm=norm, loss_weight=aux_loss_weight))
