"""Shared layers: norms, separable convs, ASPP, pyramid pooling, upsampling."""

import pytest
import torch
from torch import nn

from segzoo.models.layers import (
    ASPP,
    ConvNormAct,
    PyramidPooling,
    SeparableConvNormAct,
    build_norm,
    resize,
    scaled_rates,
)


def test_build_norm_kinds():
    assert isinstance(build_norm("bn", 8), nn.BatchNorm2d)
    assert isinstance(build_norm("syncbn", 8), nn.SyncBatchNorm)
    assert isinstance(build_norm(None, 8), nn.Identity) and isinstance(build_norm("none", 8), nn.Identity)
    assert build_norm("gn", 256).num_groups == 32
    assert build_norm("gn", 32).num_groups == 16  # >= 2 channels per group
    assert build_norm("gn", 24).num_groups == 8
    with pytest.raises(ValueError, match="unknown norm 'ln'"):
        build_norm("ln", 8)
    # SyncBN without a process group behaves as BN (single-process CPU training)
    sync = ConvNormAct(3, 4, norm="syncbn").train()
    assert sync(torch.randn(2, 3, 5, 5)).shape == (2, 4, 5, 5)


def test_separable_conv_is_depthwise_then_pointwise():
    sep = SeparableConvNormAct(8, 16, 3, dilation=2)
    assert sep.depthwise[0].groups == 8 and sep.depthwise[0].dilation == (2, 2)
    assert sep.pointwise[0].kernel_size == (1, 1) and sep.pointwise[0].out_channels == 16
    assert isinstance(sep.depthwise[1], nn.BatchNorm2d)  # BN + ReLU after the depthwise conv too
    assert sep(torch.randn(2, 8, 9, 11)).shape == (2, 16, 9, 11)
    full = ConvNormAct(8, 16, 3)
    assert sum(p.numel() for p in sep.parameters()) < sum(p.numel() for p in full.parameters())


def test_aspp_branches_rates_and_shape():
    aspp = ASPP(32, 16, (6, 12, 18))
    assert len(aspp.convs) == 4 and aspp.image_pool is not None
    assert [b[0].dilation[0] for b in aspp.convs[1:]] == [6, 12, 18]
    assert aspp.project[0][0].in_channels == 5 * 16  # concatenation, then 1x1 projection
    assert aspp(torch.randn(2, 32, 7, 9)).shape == (2, 16, 7, 9)
    assert scaled_rates(16) == (6, 12, 18) and scaled_rates(8) == (12, 24, 36)
    sep = ASPP(32, 16, (2, 4), separable=True, image_pooling=False)
    assert sep.image_pool is None and isinstance(sep.convs[1], SeparableConvNormAct)


@pytest.mark.parametrize("norm", ["gn", None])
def test_image_pooling_trains_at_batch_size_one_with_gn_or_no_norm(norm):
    for layer in (ASPP(32, 32, (2,), norm=norm), PyramidPooling(32, 8, norm=norm)):
        out = layer.train()(torch.randn(1, 32, 5, 6))
        out.sum().backward()
        assert torch.isfinite(out).all()


def test_batchnorm_image_pooling_at_batch_one_fails_clearly_but_eval_works():
    for layer in (ASPP(32, 16, (2,)), PyramidPooling(32, 8)):
        with pytest.raises(ValueError, match="batch of at least 2.*norm='gn'"):
            layer.train()(torch.randn(1, 32, 5, 6))
        layer(torch.randn(2, 32, 5, 6))  # batch 2 trains
        with torch.no_grad():
            assert layer.eval()(torch.randn(1, 32, 5, 6)).shape[0] == 1


def test_pyramid_pooling_bins_and_channels():
    ppm = PyramidPooling(64, bins=(1, 2, 3, 6))
    assert [s[0].output_size for s in ppm.stages] == [1, 2, 3, 6]
    assert ppm.out_channels == 64 + 4 * 16  # C + 4 x C/4, the paper's 2048 + 4 x 512
    assert ppm(torch.randn(2, 64, 7, 5)).shape == (2, 128, 7, 5)


def test_resize_modes():
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    assert torch.equal(resize(x, (4, 4), mode="nearest")[0, 0, :2, :2], torch.zeros(2, 2))
    assert resize(x, (2, 2)) is x
    assert resize(x, (3, 5)).shape[-2:] == (3, 5)
