"""Upsampling: fixed bilinear resize and transposed convolution initialised to bilinear.

FCN (Long et al., 2015, sec. 3.3) initialises its learnable 2x upsampling ("deconvolution")
layers to bilinear interpolation and fixes the final upsampling to bilinear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.fx.experimental.symbolic_shapes import statically_known_true

from segzoo.models.layers.aten_resize import bilinear_resize, use_aten_resize


def resize(x: Tensor, size: tuple[int, int] | torch.Size, mode: str = "bilinear") -> Tensor:
    """Resize (B, C, H, W) features to ``size`` = (H', W'); no-op when already that size.

    ``mode`` is ``"bilinear"`` (``align_corners=False``) or ``"nearest"``. Under ``torch.export``
    with symbolic sizes the no-op shortcut is taken only where the sizes are provably equal (an
    interpolation to the same size returns its input unchanged), so no size gets frozen. Under
    :func:`~segzoo.models.layers.aten_resize.keep_aten_resize`, bilinear resizes traced by
    ``torch.compile`` for training run ATen's kernels as opaque operators (same values).
    """
    size = tuple(size)
    if all(statically_known_true(a == b) for a, b in zip(x.shape[-2:], size)):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    if mode == "bilinear" and use_aten_resize(x):
        return bilinear_resize(x, size)
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """Weights (channels, channels, k, k) making a transposed conv act as bilinear upsampling.

    Each channel is upsampled independently (off-diagonal channel pairs are zero).
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt = 1 - (og - center).abs() / factor
    kernel2d = filt[:, None] * filt[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    idx = torch.arange(channels)
    weight[idx, idx] = kernel2d
    return weight


class BilinearConvTranspose2d(nn.ConvTranspose2d):
    """Learnable ``scale``x upsampling (kernel 2*scale, stride scale), initialised bilinear.

    ``forward(x, output_size)`` accepts the target (H', W') so that odd skip sizes align exactly
    (H' in [scale*H, scale*H + scale - 1]); without it the output is (scale*H, scale*W).
    """

    def __init__(self, channels: int, scale: int = 2, *, bias: bool = False) -> None:
        super().__init__(
            channels, channels, kernel_size=2 * scale, stride=scale, padding=scale // 2, bias=bias
        )
        self.scale = scale
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(channels, 2 * scale))
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:  # type: ignore[override]
        return super().forward(x, output_size=output_size)
