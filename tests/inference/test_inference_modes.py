"""Inference modes: sliding window, overlap-tile for valid-padding models, TTA."""

import pytest
import torch
from torch import nn

from segzoo.inference.modes import SemanticInferencer
from segzoo.inference.tiling import (
    mirror_pad,
    overlap_tile_logits,
    slide_logits,
    valid_tile_geometry,
    window_starts,
)
from segzoo.models import fcn8s


class Pointwise(nn.Module):
    """A 1x1-conv model: each output pixel depends on its own input pixel only."""

    def __init__(self, k=3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, k, 1)

    def forward(self, x):
        return self.conv(x)


class WindowMean(nn.Module):
    """Output = the window's mean colour everywhere: exposes how windows are blended."""

    def forward(self, x):
        return x.mean((2, 3), keepdim=True).expand(-1, -1, *x.shape[-2:])[:, :2]


class ValidConvNet(nn.Module):
    """A test-only valid-padding model (two unpadded 3x3 convs: margin 2) following the protocol:
    ``output_size(side)``, ``forward_valid`` (raw), ``forward`` = mirror-extend, then raw."""

    def __init__(self, k=3):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, k, 3))

    def output_size(self, side):
        return side - 4 if side > 4 else None

    def forward_valid(self, x):
        return self.net(x)

    def forward(self, x):
        return self.net(mirror_pad(x, 2, 2, 2, 2))


def test_window_grid_follows_mmseg():
    assert window_starts(10, 4, 3) == [0, 3, 6]  # the last window ends at the border
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert window_starts(5, 8, 3) == [0]  # a window larger than the image: one, the image
    assert window_starts(8, 8, 8) == [0]


def test_slide_equals_whole_when_the_window_covers_the_image():
    model = fcn8s(num_classes=3, backbone="vgg16_bn", fc_channels=16, fc_kernel_size=1).eval()
    x = torch.randn(2, 3, 40, 52)
    with torch.inference_mode():
        whole = model(x)
        assert torch.equal(slide_logits(model, x, (40, 52), (10, 10)), whole)
        assert torch.equal(slide_logits(model, x, (64, 64), (32, 32)), whole)  # larger than the image
        inf = SemanticInferencer(model, mode="slide", crop_size=(48, 64), stride=(16, 16))
        assert torch.equal(inf(x), whole)


def test_slide_with_overlaps_blends_by_count_map():
    x = torch.randn(1, 3, 13, 17)
    model = Pointwise()
    with torch.inference_mode():  # a pointwise model gives the whole-image logits whatever the tiling
        torch.testing.assert_close(slide_logits(model, x, (6, 5), (4, 3), batch_size=3), model(x))
    # hand check of the averaging: 1 x 6 image, windows [0, 4) and [2, 6)
    img = torch.arange(6.0).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    out = slide_logits(WindowMean(), img, (1, 4), (1, 2))
    m1, m2 = 1.5, 3.5  # the means of 0..3 and 2..5
    expected = torch.tensor([m1, m1, (m1 + m2) / 2, (m1 + m2) / 2, m2, m2])
    torch.testing.assert_close(out[0, 0, 0], expected)


@pytest.mark.parametrize("size,tile,stride", [((37, 45), (16, 20), None), ((37, 45), (16, 16), (7, 5)),
                                              ((9, 11), (24, 24), None), ((30, 30), (10, 34), (6, 30))])
def test_overlap_tile_equals_mirrored_whole_image(size, tile, stride):
    model = ValidConvNet().eval()
    x = torch.randn(2, 3, *size)
    with torch.inference_mode():
        whole = model(x)
        tiled = overlap_tile_logits(model, x, tile, stride, batch_size=4)
        torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)
        # context matters: zero padding instead of mirroring gives other border logits
        zero = model.forward_valid(torch.nn.functional.pad(x, (2, 2, 2, 2)))
        assert not torch.allclose(zero, whole, atol=1e-3)
        inf = SemanticInferencer(model, mode="slide", crop_size=tile, stride=stride)
        assert inf.valid
        torch.testing.assert_close(inf(x), whole, rtol=1e-5, atol=1e-5)


def test_overlap_tile_refuses_bad_tiles():
    model = ValidConvNet()
    assert valid_tile_geometry(model, 20) == (16, 2)
    with pytest.raises(ValueError, match="not a valid input tile.*nearest valid sides"):
        valid_tile_geometry(model, 3)
    with pytest.raises(ValueError, match="leaves gaps"):
        overlap_tile_logits(model, torch.randn(1, 3, 20, 20), (12, 12), (9, 9))


def test_mirror_pad_reflects_repeatedly_for_large_context():
    x = torch.arange(3.0).view(1, 1, 1, 3)  # [0 1 2]
    got = mirror_pad(x, 0, 0, 4, 5)[0, 0, 0].tolist()
    # reflection without repeating the edge, again and again (period 4): 0 1 2 1 [0 1 2] 1 0 1 2 1
    assert got == [0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1]


class SmallNet(nn.Module):
    """Padded convs with a stride-2 stage: logits at input size, neither flip- nor scale-invariant."""

    def __init__(self, k=4):
        super().__init__()
        torch.manual_seed(2)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, k, 5, stride=2, padding=(1, 3)))

    def forward(self, x):
        return torch.nn.functional.interpolate(self.net(x), size=x.shape[-2:], mode="bilinear")


def test_tta_shapes_and_flip_average():
    model = SmallNet().eval()
    x = torch.randn(2, 3, 48, 56)
    with torch.inference_mode():
        for kw in ({"flip": True}, {"scales": (0.75, 1.0, 1.5)}, {"flip": True, "scales": (0.75, 1.25)},
                   {"mode": "slide", "crop_size": 32, "stride": 16, "flip": True, "scales": (1.0, 1.5)}):
            assert SemanticInferencer(model, **kw)(x).shape == (2, 4, 48, 56)
        flipped = SemanticInferencer(model, flip=True)(x)
        torch.testing.assert_close(flipped, (model(x) + model(x.flip(-1)).flip(-1)) / 2)
        scaled = SemanticInferencer(model, scales=(2.0,))(x)
        up = torch.nn.functional.interpolate(x, size=(96, 112), mode="bilinear", align_corners=False)
        back = torch.nn.functional.interpolate(model(up), size=(48, 56), mode="bilinear", align_corners=False)
        torch.testing.assert_close(scaled, back)
    with pytest.raises(ValueError, match="crop_size"):
        SemanticInferencer(model, mode="slide")
    with pytest.raises(ValueError, match="mode"):
        SemanticInferencer(model, mode="sliding")


def test_overlap_tile_with_the_zoo_valid_padding_unet():
    """The real U-Net with "valid" padding follows the protocol; tiles on its pooling grid (starts
    multiples of 2**depth) reproduce its own mirrored whole-image forward exactly."""
    from segzoo.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", num_classes=3, padding="valid", base_channels=4, depth=2).eval()
    tile = 76
    out = model.output_size(tile)
    assert out == 36 and out % 4 == 0
    x = torch.randn(1, 3, 2 * out, 2 * out)
    with torch.inference_mode():
        torch.testing.assert_close(overlap_tile_logits(model, x, (tile, tile)), model(x), rtol=1e-5, atol=1e-5)
        y = torch.randn(2, 3, 50, 70)  # off-grid windows: same shape, pooling phase may differ
        got = SemanticInferencer(model, mode="slide", crop_size=tile, stride=8)(y)
        assert got.shape == (2, 3, 50, 70) and torch.isfinite(got).all()
