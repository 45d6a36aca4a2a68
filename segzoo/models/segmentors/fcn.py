"""FCN-32s / FCN-16s / FCN-8s (Long, Shelhamer & Darrell, CVPR 2015; TPAMI 2017).

VGG-16 backbone with convolutionalised fc6/fc7 and 0, 1 or 2 skip connections; ~134M parameters
with the paper's 4096-wide fc layers. Reported mean IU on PASCAL VOC 2011 val: 59.4 / 62.4 / 62.7.

A preset of :func:`~segzoo.models.segmentors.compose.compose` (backbone + ``fcn_skip_head``).
Any registered backbone works too (``backbone="resnet50"``, ``"tu-efficientnet_b0"``): fc6/fc7 sit
on its deepest feature and the skips read its stride-16 and stride-8 features (the last three
levels); a slim ``fc_channels`` suits such backbones (fc6 7x7 on 2048 channels is 411M params).
"""

from __future__ import annotations

from segzoo.models.heads.fcn_skip_head import vgg_classifier_to_fc
from segzoo.models.segmentors.compose import Spec, compose, preset_backbone, take_weights
from segzoo.models.segmentors.encoder_decoder import EncoderDecoder
from segzoo.models.weights import load_state_dict, load_weights
from segzoo.registry import MODELS

_PAPER = "Long et al., Fully Convolutional Networks for Semantic Segmentation, CVPR 2015"
_VGG = ("vgg16", "vgg16_bn")


def _fcn(
    name: str,
    num_skips: int,
    *,
    num_classes: int,
    backbone: Spec,
    weights_backbone: str | None,
    fc_channels: int,
    fc_kernel_size: int,
    dropout: float,
) -> EncoderDecoder:
    spec = preset_backbone(backbone, model=name)
    vgg_state = None
    if spec["name"] in _VGG:
        weights_backbone = take_weights(spec, weights_backbone, model=name)
        if weights_backbone is not None:
            vgg_state = load_state_dict(weights_backbone)  # read once: backbone + fc6/fc7
    head = {"name": "fcn_skip_head", "num_skips": num_skips, "fc_channels": fc_channels,
            "fc_kernel_size": fc_kernel_size, "dropout": dropout}
    model = compose(num_classes=num_classes, backbone=spec, decode_head=head, name=name,
                    weights_backbone=weights_backbone if vgg_state is None else None)
    if vgg_state is not None:
        load_weights(model.backbone, vgg_state, source=str(weights_backbone))
        fc_state = vgg_classifier_to_fc(vgg_state, model.decode_head)
        if fc_state:  # ImageNet fc6/fc7 initialise the convolutionalised layers, as in the paper
            model.decode_head.load_state_dict(fc_state, strict=False)
    return model


@MODELS.register("fcn32s", task="semantic", paper=_PAPER)
def fcn32s(
    *,
    num_classes: int = 21,
    backbone: Spec = "vgg16",
    weights_backbone: str | None = None,
    fc_channels: int = 4096,
    fc_kernel_size: int = 7,
    dropout: float = 0.5,
) -> EncoderDecoder:
    """FCN-32s: class scores at stride 32, bilinear x32 upsampling.

    Args:
        num_classes: K output classes (background included where the dataset has one).
        backbone: a registered backbone name (``vgg16``, ``vgg16_bn``; any other works, e.g.
            ``resnet50`` or ``tu-<timm name>``, with its deepest three feature levels).
            Or ``{name: ..., **options}`` for its other options, e.g. a ``tu-`` backbone's
            ``timm_kwargs``.
        weights_backbone: path or URL of backbone weights (a torchvision VGG checkpoint also
            initialises fc6/fc7 from its classifier when the shapes match).
        fc_channels: fc6/fc7 width (4096 in the paper; smaller for a slim, fast model).
        fc_kernel_size: fc6 kernel (7 in the paper).
        dropout: after fc6 and fc7 (0.5 in the paper).

    Returns:
        An :class:`EncoderDecoder`: images (B, 3, H, W), H, W >= 32 -> logits (B, K, H, W).
    """
    return _fcn("fcn32s", 0, num_classes=num_classes, backbone=backbone,
                weights_backbone=weights_backbone, fc_channels=fc_channels,
                fc_kernel_size=fc_kernel_size, dropout=dropout)


@MODELS.register("fcn16s", task="semantic", paper=_PAPER)
def fcn16s(
    *,
    num_classes: int = 21,
    backbone: Spec = "vgg16",
    weights_backbone: str | None = None,
    fc_channels: int = 4096,
    fc_kernel_size: int = 7,
    dropout: float = 0.5,
) -> EncoderDecoder:
    """FCN-16s: FCN-32s + the stride-16 skip (pool4). Arguments as :func:`fcn32s`."""
    return _fcn("fcn16s", 1, num_classes=num_classes, backbone=backbone,
                weights_backbone=weights_backbone, fc_channels=fc_channels,
                fc_kernel_size=fc_kernel_size, dropout=dropout)


@MODELS.register("fcn8s", task="semantic", paper=_PAPER)
def fcn8s(
    *,
    num_classes: int = 21,
    backbone: Spec = "vgg16",
    weights_backbone: str | None = None,
    fc_channels: int = 4096,
    fc_kernel_size: int = 7,
    dropout: float = 0.5,
) -> EncoderDecoder:
    """FCN-8s: FCN-16s + the stride-8 skip (pool3). Arguments as :func:`fcn32s`."""
    return _fcn("fcn8s", 2, num_classes=num_classes, backbone=backbone,
                weights_backbone=weights_backbone, fc_channels=fc_channels,
                fc_kernel_size=fc_kernel_size, dropout=dropout)
