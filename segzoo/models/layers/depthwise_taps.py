"""Depthwise convolution written as k x k shifted multiply-adds while ``torch.compile`` traces.

DeepLab v3+'s separable convolutions (ASPP's atrous branches, the decoder's 3x3 convs; Chen et
al. 2018, sec. 3.1) are depthwise: one k x k filter per channel, 9 multiply-adds per output for
k = 3, a memory-bound operation. In run 5 of the GPU check (H200, torch 2.11, bf16 +
channels_last, docs/benchmarks.md) cuDNN ran them with ``conv2d_grouped_direct_kernel`` at 1.5
ms a call, 3 calls a training step of DeepLab v3+ R50 at 512x1024, batch 8 (10% of the step's
GPU time, eager and compiled alike). Written as a sum of k*k shifted slices of the zero-padded input, each times its channel's
weight, the operation is elementwise work that Inductor fuses into a few kernels (forward, and
in the backward the input gradient and a per-channel reduction for the weight gradient).

:func:`depthwise_as_taps` switches this on for :class:`DepthwiseConv2d` while Dynamo traces
(not under ``torch.export``); eager calls keep the convolution kernel (unfused, the sum would
be 2k² passes over the tensor). It is off by default: gpu_train.py's ``--compile-levers`` measures whether it pays.
The weights are the same ``nn.Conv2d`` parameters, so checkpoints do not change; the sums
differ from cuDNN's only by rounding (float64: ~1e-15).
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch.nn.functional as F
from torch import Tensor, nn

from segzoo.models.layers.compile_switch import CompileSwitch

_SWITCH = CompileSwitch("depthwise_as_taps")


def depthwise_taps(x: Tensor, weight: Tensor, bias: Tensor | None, dilation: int) -> Tensor:
    """Depthwise convolution, stride 1, "same" zero padding, as k*k shifted multiply-adds.

    Args:
        x: (B, C, H, W), any float dtype and memory layout.
        weight: (C, 1, k, k), k odd.
        bias: (C,) or None.
        dilation: the atrous rate (the taps are ``dilation`` pixels apart).

    Returns:
        (B, C, H, W), equal to ``F.conv2d(x, weight, bias, padding=dilation * (k - 1) // 2,
        dilation=dilation, groups=C)`` up to rounding.
    """
    c, k = weight.shape[0], weight.shape[-1]
    h, w = x.shape[-2:]
    pad = dilation * (k - 1) // 2
    padded = F.pad(x, (pad, pad, pad, pad))
    taps = weight.to(x.dtype).reshape(1, c, k * k)
    out = None
    for i in range(k):
        for j in range(k):
            term = padded[:, :, i * dilation:i * dilation + h, j * dilation:j * dilation + w] \
                * taps[:, :, i * k + j, None, None]
            out = term if out is None else out + term
    return out if bias is None else out + bias.to(x.dtype)[:, None, None]


def depthwise_as_taps(enabled: bool = True) -> AbstractContextManager[None]:
    """While active, :class:`DepthwiseConv2d` layers traced by ``torch.compile`` compute
    :func:`depthwise_taps` instead of calling the convolution kernel (same values up to
    rounding). Eager calls and ``torch.export`` are unaffected. Dynamo guards on the setting,
    so a model compiled under one setting and called under the other is traced again
    (:class:`~segzoo.models.layers.compile_switch.CompileSwitch`)."""
    return _SWITCH(enabled)


def depthwise_taps_enabled() -> bool:
    """Whether :func:`depthwise_as_taps` is active."""
    return _SWITCH.enabled


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` with ``groups == in_channels == out_channels`` (one filter per channel),
    which under :func:`depthwise_as_taps` and ``torch.compile`` runs as :func:`depthwise_taps`
    when its geometry allows (stride 1, odd square kernel, "same" zero padding); otherwise, and
    always in eager mode, a plain convolution. Its parameters and state-dict keys are
    ``nn.Conv2d``'s; ``kwargs`` are its (``stride``, ``padding``, ``dilation``, ``bias``, ...).
    """

    def __init__(self, channels: int, kernel_size: int, **kwargs) -> None:
        super().__init__(channels, channels, kernel_size, groups=channels, **kwargs)
        k, d = self.kernel_size, self.dilation
        self._taps_ok = (self.stride == (1, 1) and k[0] == k[1] and k[0] % 2 == 1 and d[0] == d[1]
                         and self.padding == (d[0] * (k[0] - 1) // 2,) * 2 and self.padding_mode == "zeros")

    def forward(self, x: Tensor) -> Tensor:
        if self._taps_ok and _SWITCH.tracing():
            return depthwise_taps(x, self.weight, self.bias, self.dilation[0])
        return super().forward(x)
