"""RoIs for the keypoint-decoding tests on the CPU and the GPU (tests/models/test_keypoint_decode.py,
tests/cuda/test_cuda_postprocess.py)."""

from __future__ import annotations

import torch


def rois_like(n: int, seed: int = 0) -> torch.Tensor:
    """Boxes of many sizes: under a pixel, fractional, large, at integer corners. Of ``rois_like(40)``
    the fractional sizes w / ceil(w) round differently as a / b and as a * (1 / b) (CUDA's division
    by a Python int) for 12 widths and 11 heights."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 300
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 250], 1)
    boxes[:4, 2:] = boxes[:4, :2] + 0.3  # thinner than a pixel: clamped to 1
    boxes[4:8] = boxes[4:8].round()  # whole-pixel sizes
    return boxes
