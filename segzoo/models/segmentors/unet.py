"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015), original and over any encoder: a preset of
:func:`~segzoo.models.segmentors.compose.compose` (the ``unet_encoder`` backbone or any other +
the ``unet_head`` decoder).

Original (``backbone="unet_encoder"``): 64..1024 channels, [3x3 conv, ReLU] x 2 per level, 2x2
max-pool, 2x2 up-convolutions halving channels, skip concatenation, 1x1 -> K; 31.0M parameters.
``padding="valid"`` is the paper's geometry: a 572x572 tile gives 388x388 logits (its centre),
see :meth:`UNet.output_size` / :meth:`UNet.valid_input_sizes`. ``padding="same"`` keeps the size.

Encoder-swappable (any other backbone, smp's U-Net): decoder blocks of (256, 128, 64, 32, 16)
channels with nearest upsampling and BN, the last one(s) without a skip, up to stride 1.

Forward contract: like every semantic model, logits at the input size. With "valid" padding the
input is mirror-extended by the missing context first (the paper's border strategy, sec. 2 and
Fig. 2, applied to one tile) and the output cropped; :meth:`UNet.forward_valid` is the raw
network (tile in, smaller centre out). Overlap-tile inference of large images lives with
evaluation.
"""

from __future__ import annotations

from typing import Literal

from segzoo.models.layers.padding import mirror_pad
from segzoo.models.segmentors.compose import Spec, compose, parse_spec, preset_backbone
from segzoo.models.segmentors.unet_segmentor import UNet, valid_output_size
from segzoo.registry import MODELS

_PAPER = "Ronneberger et al., U-Net: Convolutional Networks for Biomedical Image Segmentation, MICCAI 2015"

__all__ = ["UNet", "mirror_pad", "unet", "valid_output_size"]


@MODELS.register("unet", task="semantic", paper=_PAPER)
def unet(
    *,
    num_classes: int = 2,
    backbone: Spec = "unet_encoder",
    weights_backbone: str | None = None,
    padding: Literal["valid", "same"] = "same",
    base_channels: int = 64,
    depth: int = 4,
    decoder_channels: tuple[int, ...] | None = None,
    upsampling: Literal["transposed", "bilinear", "nearest"] | None = None,
    norm: Literal["auto", "bn", "syncbn", "gn", "none"] | None = "auto",
) -> UNet:
    """U-Net.

    Args:
        num_classes: K (2 in the paper's cell-segmentation tasks).
        backbone: ``"unet_encoder"`` for the original, or any registered backbone (``resnet34``,
            ``mobilenet_v2``, ``tu-<timm name>``) for the smp-style encoder-swappable U-Net.
            Or ``{name: ..., **options}`` for its other options, e.g. a ``tu-`` backbone's
            ``timm_kwargs`` (``base_channels``, ``depth``, ... stay arguments of ``unet``).
        weights_backbone: path or URL of encoder weights.
        padding: ``"valid"`` (paper: 572 -> 388; original encoder only) or ``"same"``.
        base_channels: first-level width of the original encoder (64).
        depth: pooling steps of the original encoder (4).
        decoder_channels: block widths, deepest first; default the mirror of the original
            encoder (512, 256, 128, 64), or (256, 128, 64, 32, 16) over other encoders.
        upsampling: ``"transposed"`` (paper's 2x2 up-conv), ``"bilinear"`` or ``"nearest"``;
            default transposed for the original, nearest (smp) otherwise.
        norm: ``"auto"``: none for the original (the paper), BN in the decoder otherwise;
            or ``"bn"``, ``"syncbn"``, ``"gn"``, ``"none"``/``None``.

    Returns:
        A :class:`UNet`: images (B, 3, H, W), H, W >= 2**depth (original) or the encoder's
        largest stride -> logits (B, K, H, W).

    Raises:
        ValueError: "valid" padding or original-encoder options with another encoder.
    """
    name, _ = parse_spec(backbone, key="backbone", model="unet")
    original = name == "unet_encoder"
    if norm == "auto":
        norm = None if original else "bn"
    if norm == "none":
        norm = None
    if original:
        encoder = preset_backbone(backbone, model="unet", base_channels=base_channels, depth=depth,
                                  padding=padding, norm=norm)
        upsampling = upsampling or "transposed"
        if decoder_channels is None:  # the mirror of the encoder (paper: 512, 256, 128, 64)
            decoder_channels = tuple(base_channels * 2**i for i in reversed(range(depth)))
    else:
        if padding != "same" or base_channels != 64 or depth != 4:
            raise ValueError("unet: padding='valid', base_channels and depth are options of the "
                             f"original encoder (backbone='unet_encoder'), not of {name!r}")
        encoder = backbone
        upsampling = upsampling or "nearest"
    head = {"name": "unet_head", "decoder_channels": decoder_channels, "upsampling": upsampling,
            "padding": padding, "norm": norm}
    return compose(num_classes=num_classes, backbone=encoder, decode_head=head,
                   weights_backbone=weights_backbone, name="unet")
