"""Depthwise convolution as shifted multiply-adds under torch.compile (layers.depthwise_taps)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import AotEagerAndRecordGraphs, CompileCounterWithBackend

from segzoo.models.layers import ConvNormAct, SeparableConvNormAct
from segzoo.models.layers.depthwise_taps import (
    DepthwiseConv2d,
    depthwise_as_taps,
    depthwise_taps,
    depthwise_taps_enabled,
)


@pytest.mark.parametrize("k,dilation", [(3, 1), (3, 6), (5, 2)])
@pytest.mark.parametrize("bias", [False, True])
def test_taps_equal_the_convolution_with_gradients(k, dilation, bias):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 9, 13, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 1, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True) if bias else None
    pad = dilation * (k - 1) // 2
    ref = F.conv2d(x, w, b, padding=pad, dilation=dilation, groups=5)
    out = depthwise_taps(x, w, b, dilation)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    inputs = (x, w) + ((b,) if bias else ())
    for got, want in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, inputs, g)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # channels_last input: same values
    x_cl = x.detach().contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(depthwise_taps(x_cl, w, b, dilation), ref, rtol=1e-12, atol=1e-12)


def test_conv_blocks_build_depthwise_layers_with_conv2d_parameters():
    torch.manual_seed(0)
    sep = SeparableConvNormAct(8, 16, dilation=6)
    assert isinstance(sep.depthwise[0], DepthwiseConv2d) and isinstance(sep.depthwise[0], torch.nn.Conv2d)
    assert sep.depthwise[0].groups == 8 and sep.depthwise[0].dilation == (6, 6)
    assert type(sep.pointwise[0]) is torch.nn.Conv2d and type(ConvNormAct(8, 16)[0]) is torch.nn.Conv2d
    # the same parameters, keys and initial values as the plain nn.Conv2d it replaces
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(8, 8, 3, padding=6, dilation=6, groups=8, bias=False)
    assert list(sep.depthwise[0].state_dict()) == ["weight"]
    assert torch.equal(sep.depthwise[0].weight, plain.weight)
    # geometries the taps do not cover keep the convolution even with the switch on
    assert not DepthwiseConv2d(4, 3, stride=2, padding=1)._taps_ok
    assert not DepthwiseConv2d(4, 3, padding=0)._taps_ok
    assert DepthwiseConv2d(4, 3, padding=2, dilation=2)._taps_ok


def graph_ops(enabled: bool, *, grad: bool = True):
    torch._dynamo.reset()
    backend = AotEagerAndRecordGraphs()
    torch.manual_seed(0)
    block = SeparableConvNormAct(4, 6, dilation=2)
    x = torch.randn(2, 4, 8, 10)
    with depthwise_as_taps(enabled), torch.set_grad_enabled(grad):
        out = torch.compile(block, backend=backend)(x)
        if grad:
            out.sum().backward()
    convs = [n for g in backend.fw_graphs for n in g.graph.nodes if n.target == torch.ops.aten.convolution.default]
    return [n.args[1].meta["val"].shape[1] for n in convs]  # in-channels per group of each conv's weight


def test_switch_rewrites_only_the_depthwise_conv_of_a_compiled_block():
    assert graph_ops(False) == [1, 4]  # the depthwise (1 channel per group) and the pointwise conv
    assert graph_ops(True) == [4]  # the depthwise one is now multiply-adds
    assert graph_ops(True, grad=False) == [4]  # compiled inference too


def test_switch_leaves_eager_and_export_alone_and_dynamo_retraces():
    block = SeparableConvNormAct(4, 6, dilation=2).eval()
    x = torch.randn(2, 4, 8, 10)
    with depthwise_as_taps():
        assert depthwise_taps_enabled()
        exported = torch.export.export(block, (x,))
        convs = [n for n in exported.graph_module.graph.nodes if "conv" in str(n.target)]
        assert len(convs) == 2
    assert not depthwise_taps_enabled()
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(block, backend=counter)
    ref = block(x)
    compiled(x)
    with depthwise_as_taps():
        out = compiled(x)
    assert counter.frame_count == 2  # traced again with the switch on
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_inductor_trains_the_rewritten_block_like_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    block = SeparableConvNormAct(8, 8, dilation=3)
    x = torch.randn(2, 8, 12, 12)
    eager = torch.autograd.grad(block(x).square().sum(), block.depthwise[0].weight)[0]
    compiled = torch.compile(block)
    with depthwise_as_taps():
        got = torch.autograd.grad(compiled(x).square().sum(), block.depthwise[0].weight)[0]
    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-4)
