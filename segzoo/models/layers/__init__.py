"""Shared layers: conv-norm-act blocks, ASPP, pyramid pooling and upsampling (one place for
every architecture)."""

from segzoo.models.layers.aspp import ASPP, ImagePooling, scaled_rates
from segzoo.models.layers.conv import (
    NORMS,
    ConvNormAct,
    NormName,
    SeparableConvNormAct,
    build_norm,
    conv_block,
    is_batch_norm,
)
from segzoo.models.layers.depthwise_taps import DepthwiseConv2d
from segzoo.models.layers.padding import mirror_pad
from segzoo.models.layers.ppm import PyramidPooling
from segzoo.models.layers.upsample import BilinearConvTranspose2d, bilinear_kernel, resize

__all__ = [
    "ASPP",
    "NORMS",
    "BilinearConvTranspose2d",
    "ConvNormAct",
    "DepthwiseConv2d",
    "ImagePooling",
    "NormName",
    "PyramidPooling",
    "SeparableConvNormAct",
    "bilinear_kernel",
    "build_norm",
    "conv_block",
    "is_batch_norm",
    "mirror_pad",
    "resize",
    "scaled_rates",
]
