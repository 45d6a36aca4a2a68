"""Shared layers: conv-norm-act blocks and upsampling (one place for every architecture)."""

from segzoo.models.layers.conv import ConvNormAct, build_norm
from segzoo.models.layers.upsample import BilinearConvTranspose2d, bilinear_kernel, resize

__all__ = ["ConvNormAct", "build_norm", "BilinearConvTranspose2d", "bilinear_kernel", "resize"]
