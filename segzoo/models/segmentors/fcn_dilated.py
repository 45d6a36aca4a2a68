"""The dilated FCN of torchvision (``fcn_resnet50`` / ``fcn_resnet101``), registered as ``fcn``.

Not the paper's FCN-8s: a ResNet at output stride 8 (layer3 and layer4 atrous, DeepLab's trick),
one 3x3 conv head (2048 -> 512) + BN + ReLU + dropout 0.1 + 1x1 -> K, bilinear x8 upsampling and
no skips; optionally torchvision's auxiliary FCN head on layer3. torchvision builds it after Long
et al. 2015 (the FCN idea) with the dilation of Chen et al. / Yu & Koltun.
"""

from __future__ import annotations

from typing import Any, Literal

from segzoo.models.segmentors.compose import Norm, Spec, aux_spec, compose, preset_backbone, renamed
from segzoo.models.segmentors.encoder_decoder import EncoderDecoder
from segzoo.registry import MODELS

_PAPER = "Long et al., CVPR 2015 (torchvision's dilated-ResNet FCN, output stride 8)"


@MODELS.register("fcn", task="semantic", paper=_PAPER)
@renamed(aux_head="auxiliary_head")
def fcn(
    *,
    num_classes: int = 21,
    backbone: Spec = "resnet50",
    weights_backbone: str | None = None,
    output_stride: Literal[8, 16, 32] = 8,
    channels: int | None = None,
    dropout: float = 0.1,
    norm: Norm | None = "bn",
    auxiliary_head: bool | dict[str, Any] | None = False,
    aux_loss_weight: float = 0.4,
) -> EncoderDecoder:
    """Dilated FCN: backbone at ``output_stride`` + :class:`~segzoo.models.heads.FCNHead`.

    Args:
        num_classes: K.
        backbone: a registered backbone with ``output_stride`` (``resnet50``, ``resnet18``,
            ``mobilenet_v2``, ``tu-<timm name>``, ...).
            Or ``{name: ..., **options}`` for its other options, e.g. a ``tu-`` backbone's
            ``timm_kwargs`` (the model's own arguments, like ``output_stride``, stay here).
        weights_backbone: path or URL of backbone weights (e.g. torchvision's ImageNet ResNet).
        output_stride: 8 (torchvision), 16 or 32.
        channels: head width (default: the deepest feature's channels / 4, 512 for ResNet-50).
        dropout: before the classifier (0.1).
        norm: head normalisation.
        auxiliary_head: ``True`` is torchvision's ``aux_loss=True``: an FCN head on the
            second-deepest feature (layer3), used in training only; or any head spec.
            ``aux_head`` is its deprecated old name.
        aux_loss_weight: its loss weight (torchvision's reference training uses 0.5; mmseg 0.4).

    Returns:
        An :class:`EncoderDecoder`: images (B, 3, H, W), H, W >= output_stride -> logits
        (B, K, H, W); in training ``{"out", "aux"}``.
    """
    head = {"name": "fcn_head", "channels": channels, "dropout": dropout, "norm": norm}
    backbone_spec = preset_backbone(backbone, model="fcn", output_stride=output_stride)
    return compose(num_classes=num_classes, backbone=backbone_spec,
                   decode_head=head, weights_backbone=weights_backbone, name="fcn",
                   auxiliary_head=aux_spec(auxiliary_head, norm=norm, loss_weight=aux_loss_weight))


def fcn_resnet50(*, num_classes: int = 21, aux_loss: bool = False,
                 weights_backbone: str | None = None) -> EncoderDecoder:
    """torchvision's ``fcn_resnet50(num_classes=..., aux_loss=...)``, parameter for parameter;
    its checkpoints load through :func:`segzoo.models.convert.from_torchvision`."""
    return fcn(num_classes=num_classes, backbone="resnet50", weights_backbone=weights_backbone,
               auxiliary_head=aux_loss)


def fcn_resnet101(*, num_classes: int = 21, aux_loss: bool = False,
                  weights_backbone: str | None = None) -> EncoderDecoder:
    """torchvision's ``fcn_resnet101`` (see :func:`fcn_resnet50`)."""
    return fcn(num_classes=num_classes, backbone="resnet101", weights_backbone=weights_backbone,
               auxiliary_head=aux_loss)
