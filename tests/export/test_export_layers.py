"""The shape-generic layers (segzoo/models/layers/exportable.py) equal the eager operations they
replace at every size tried, odd ones included, and export with dynamic H, W to ONNX graphs that
onnxruntime runs at sizes other than the export size."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.version_marks import needs_dynamic_pooling

from segzoo.models.layers import BilinearConvTranspose2d, resize
from segzoo.models.layers.exportable import (
    AdaptiveAvgPool2d,
    adaptive_avg_pool2d,
    conv_transpose_to_size,
    mirror_pad,
    pad_to,
    valid_unet_tile,
)
from segzoo.models.layers.padding import mirror_pad as eager_mirror_pad

SIDES = (1, 2, 3, 5, 6, 7, 12, 13, 31, 47)


@pytest.mark.parametrize("bins", [1, 2, 3, 6, (2, 5)])
def test_adaptive_avg_pool_equals_torch_at_every_size(bins):
    for h, w in itertools.product(SIDES, (1, 6, 13, 47)):
        x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
        want = F.adaptive_avg_pool2d(x, bins)
        got = adaptive_avg_pool2d(x, bins)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(AdaptiveAvgPool2d(bins)(x), want, atol=1e-6, rtol=1e-6)


def _old_fuse(up, score, size):
    """FCN's skip fusion as written before the exportable formulation."""
    lo = up.scale * score.shape[-2], up.scale * score.shape[-1]
    if all(lo[i] <= size[i] < lo[i] + up.scale for i in range(2)):
        return up(score, output_size=list(size))
    return resize(up(score), size)


@pytest.mark.parametrize("scale", [2, 4])
def test_conv_transpose_to_size_equals_output_size_or_resize(scale):
    torch.manual_seed(0)
    up = BilinearConvTranspose2d(3, scale)
    with torch.no_grad():
        up.weight.add_(0.1 * torch.randn_like(up.weight))  # not only the bilinear kernel
    biased = torch.nn.ConvTranspose2d(3, 2, 2 * scale, stride=scale, padding=scale // 2)
    for h, w in [(1, 1), (2, 3), (5, 4), (7, 7)]:
        x = torch.randn(2, 3, h, w)
        # every output size it can make exactly, and sizes one below / above (resized)
        for th, tw in itertools.product(range(scale * h - 1, scale * h + scale + 1),
                                        range(scale * w - 1, scale * w + scale + 1)):
            if min(th, tw) < 1:
                continue
            torch.testing.assert_close(conv_transpose_to_size(up, x, (th, tw)), _old_fuse(up, x, (th, tw)),
                                       atol=1e-6, rtol=1e-6)
            fits = scale * h <= th < scale * h + scale and scale * w <= tw < scale * w + scale
            want = biased(x, output_size=[th, tw]) if fits else resize(biased(x), (th, tw))
            torch.testing.assert_close(conv_transpose_to_size(biased, x, (th, tw)), want,
                                       atol=1e-6, rtol=1e-6)


def test_pad_to_equals_zero_padding_and_cropping():
    x = torch.randn(1, 2, 6, 7)
    torch.testing.assert_close(pad_to(x, (6, 7)), x)
    torch.testing.assert_close(pad_to(x, (7, 8)), F.pad(x, (0, 1, 0, 1)))
    torch.testing.assert_close(pad_to(x, (5, 8)), F.pad(x, (0, 1))[..., :5, :])


def test_mirror_pad_equals_repeated_reflection():
    for (h, w), pads in itertools.product([(1, 1), (1, 5), (2, 3), (4, 4), (5, 9)],
                                          [(0, 0, 0, 0), (1, 2, 3, 0), (7, 3, 11, 20), (92, 93, 92, 95)]):
        x = torch.randn(2, 3, h, w)
        torch.testing.assert_close(mirror_pad(x, *pads), eager_mirror_pad(x, *pads), atol=0, rtol=0)


def _old_input_size_for(size, depth):
    from segzoo.models.segmentors.unet_segmentor import valid_output_size

    s = 1
    while (o := valid_output_size(s, depth)) is None or o < size:
        s += 1
    return s, (s - o) // 2


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_valid_unet_tile_equals_the_search(depth):
    for size in range(2**depth, 300, 7 if depth == 4 else 3):
        assert valid_unet_tile(size, depth) == _old_input_size_for(size, depth), size


class _Ops(torch.nn.Module):
    """Every shape-generic op on one input; outputs concatenated per kind."""

    def __init__(self):
        super().__init__()
        self.up = BilinearConvTranspose2d(3, 2)
        self.pool = AdaptiveAvgPool2d(3)

    def forward(self, x):
        coarse = F.max_pool2d(x, 2)  # floor: 2 * coarse is the size or one less
        up = conv_transpose_to_size(self.up, coarse, x.shape[-2:])
        crop = conv_transpose_to_size(self.up, coarse, (x.shape[-2] - 1, x.shape[-1]))  # resized
        tile, margin = valid_unet_tile(x.shape[-2], 2)
        padded = mirror_pad(x, margin, tile - x.shape[-2] - margin, 3, 1)
        return up, crop, self.pool(x), pad_to(coarse, x.shape[-2:]), padded


@needs_dynamic_pooling
def test_exportable_ops_export_with_dynamic_height_and_width(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from segzoo.export.onnx import export_program

    model = _Ops().eval()
    path, min_size = export_program(model, tmp_path / "ops.onnx", (16, 20))
    assert min_size == 2
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in [(16, 20), (9, 13), (23, 8)]:
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            want = model(x)
        got = session.run(None, {"images": x.numpy()})
        for g, r in zip(got, want):
            assert g.shape == tuple(r.shape)
            np.testing.assert_allclose(g, r.numpy(), atol=1e-5)
