"""The opaque bilinear resize operators and their switch (segzoo.models.layers.aten_resize)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._dynamo.testing import AotEagerAndRecordGraphs, CompileCounterWithBackend

from segzoo.models.layers import resize
from segzoo.models.layers.aten_resize import bilinear_resize, keep_aten_resize

RESIZE = torch.ops.segzoo.bilinear_resize.default
RESIZE_BACKWARD = torch.ops.segzoo.bilinear_resize_backward.default


def nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", [lambda t: t, nhwc], ids=["nchw", "channels_last"])
def test_operators_pass_torch_library_opcheck(layout):
    """Schemas, fake (meta) shapes and strides, autograd registration and AOT dispatch agree
    with the real kernels, for both memory layouts."""
    x = layout(torch.randn(2, 3, 5, 7, dtype=torch.float64)).requires_grad_()
    grad = layout(torch.randn(2, 3, 11, 13, dtype=torch.float64))
    for channels_last in (False, True):  # the output layout is an argument, whatever the input's
        torch.library.opcheck(RESIZE, (x, [11, 13], channels_last))
        torch.library.opcheck(RESIZE_BACKWARD, (grad, [2, 3, 5, 7], channels_last))
    out = bilinear_resize(x, (11, 13))
    (gx,) = torch.autograd.grad(out, x, grad)
    is_nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    layout_of_x = torch.channels_last if is_nhwc else torch.contiguous_format
    assert out.is_contiguous(memory_format=layout_of_x) and gx.is_contiguous(memory_format=layout_of_x)


@pytest.mark.parametrize("size", [(11, 13), (3, 4)], ids=["up", "down"])
def test_values_and_gradients_equal_interpolate_bit_for_bit(size):
    x = torch.randn(2, 4, 6, 9, requires_grad=True)
    weight = torch.randn(2, 4, *size)
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    (ref_grad,) = torch.autograd.grad((ref * weight).sum(), x)
    out = bilinear_resize(x, size)
    (grad,) = torch.autograd.grad((out * weight).sum(), x)
    assert torch.equal(out, ref)
    assert torch.equal(grad, ref_grad)
    assert torch.autograd.gradcheck(lambda t: bilinear_resize(t, size),
                                    (x.detach().double().requires_grad_(),))


class ConvResize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize(self.conv(x), (16, 20))


def op_names(graphs) -> set[str]:
    return {str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"}


def compiled_training_graphs(enabled: bool | None):
    torch._dynamo.reset()
    backend = AotEagerAndRecordGraphs()
    model = torch.compile(ConvResize(), backend=backend)
    x = torch.randn(2, 3, 8, 10)
    if enabled is None:
        model(x).sum().backward()
    else:
        with keep_aten_resize(enabled):
            model(x).sum().backward()
    return op_names(backend.fw_graphs), op_names(backend.bw_graphs)


def test_switch_routes_compiled_training_through_the_operators():
    fw, bw = compiled_training_graphs(True)
    assert "segzoo.bilinear_resize.default" in fw
    assert "segzoo.bilinear_resize_backward.default" in bw
    assert "aten._unsafe_index_put.default" not in bw
    for enabled in (None, False):  # the default and explicitly off: the decomposition itself,
        fw, bw = compiled_training_graphs(enabled)  # gathers forward, a scatter-add backward
        assert not any(name.startswith("segzoo.") for name in fw | bw)
        assert "aten._unsafe_index.Tensor" in fw and "aten._unsafe_index_put.default" in bw


def test_switch_leaves_eager_inference_and_export_alone():
    model = ConvResize()
    x = torch.randn(2, 3, 8, 10)
    with keep_aten_resize():
        # eager: not tracing, plain F.interpolate (same values either way)
        assert torch.equal(model(x), F.interpolate(model.conv(x), size=(16, 20), mode="bilinear"))
        # compiled inference: nothing requires gradients, so Inductor may fuse the resize
        torch._dynamo.reset()
        backend = AotEagerAndRecordGraphs()
        with torch.no_grad():
            torch.compile(model, backend=backend)(x)
        assert not any(name.startswith("segzoo.") for name in op_names(backend.fw_graphs))
        # torch.export: graphs stay plain ATen for ONNX and other runtimes
        exported = torch.export.export(model, (x,))
    assert not any(name.startswith("segzoo.") for name in op_names([exported.graph_module]))


def test_dynamo_retraces_when_the_switch_changes():
    """A model compiled with the switch off and then called with it on is traced again (a
    guard on the setting), and each setting keeps its own graph afterwards."""
    torch._dynamo.reset()
    inner = AotEagerAndRecordGraphs()
    counter = CompileCounterWithBackend(inner)
    model = torch.compile(ConvResize(), backend=counter)
    x = torch.randn(2, 3, 8, 10)
    model(x).sum().backward()
    with keep_aten_resize():
        model(x).sum().backward()
    model(x).sum().backward()
    assert counter.frame_count == 2
    assert "segzoo.bilinear_resize.default" in op_names(inner.fw_graphs[1:])
    assert not any(name.startswith("segzoo.") for name in op_names(inner.fw_graphs[:1]))


def test_inductor_keeps_the_operators_and_matches_eager():
    """With Inductor itself (CPU), the generated code calls the operators instead of a
    scatter-add, and the gradients equal eager's."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = ConvResize()
    x = torch.randn(2, 3, 8, 10)
    weight = torch.randn(2, 4, 16, 20)
    (ref,) = torch.autograd.grad((model(x) * weight).sum(), model.conv.weight)
    compiled = torch.compile(model)

    def step():
        with keep_aten_resize():
            return torch.autograd.grad((compiled(x) * weight).sum(), compiled.conv.weight)[0]

    grad, code = run_and_get_code(step)
    code = "\n".join(code)
    assert "segzoo.bilinear_resize" in code and "segzoo.bilinear_resize_backward" in code
    assert "atomic_add" not in code
    torch.testing.assert_close(grad, ref, rtol=1e-5, atol=1e-5)


def test_switch_nests_and_is_restored_after_an_error():
    from segzoo.models.layers.aten_resize import aten_resize_enabled

    assert not aten_resize_enabled()
    with pytest.raises(RuntimeError):
        with keep_aten_resize():
            assert aten_resize_enabled()
            with keep_aten_resize(False):
                assert not aten_resize_enabled()
            assert aten_resize_enabled()
            raise RuntimeError("a failing step")
    assert not aten_resize_enabled()


def test_switch_on_a_torch_without_custom_ops_is_a_clear_error(monkeypatch):
    from segzoo.models.layers import aten_resize

    monkeypatch.setattr(aten_resize, "_resize_op", None)  # as on torch < 2.4
    monkeypatch.setattr(aten_resize._SWITCH, "unavailable", "needs torch >= 2.4 (torch.library.custom_op)")
    with pytest.raises(RuntimeError, match=r"needs torch >= 2.4 .* leave the switch off"):
        with keep_aten_resize():
            pass
    with pytest.raises(RuntimeError, match=r"bilinear_resize needs torch >= 2.4"):
        bilinear_resize(torch.zeros(1, 1, 2, 2), (4, 4))
    with keep_aten_resize(False):  # switching it off stays possible
        assert not aten_resize.aten_resize_enabled()


class DecoderLike(nn.Module):
    """DeepLab v3+'s decoder pattern in channels_last: a resized map concatenated with a skip
    and convolved, so that the resize's gradient is a channel slice of a channels_last tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.deep = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.fuse = nn.Conv2d(8 + 3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([resize(self.deep(x), x.shape[-2:]), x], dim=1))


def test_inductor_channels_last_gradient_slices_keep_the_promised_layout():
    """Regression (a tiny DeepLab v3+ in bf16 + channels_last under Inductor): the backward
    operator's gradient is a channel slice of a channels_last tensor (here (2, 8, 16, 24) with
    strides (4224, 1, 264, 11)); a fake kernel that judged the layout by channels_last
    contiguity promised a contiguous result, ATen returned channels_last, and Inductor's stride
    assertion failed. The layout is now an operator argument fixed at trace time."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = DecoderLike().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 16, 24).contiguous(memory_format=torch.channels_last)
    ref = torch.autograd.grad(model(x).square().sum(), model.deep.weight)[0]
    compiled = torch.compile(model)
    with keep_aten_resize():
        got = torch.autograd.grad(compiled(x).square().sum(), model.deep.weight)[0]
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_a_failed_registration_leaves_the_switch_off_not_the_import_broken(monkeypatch):
    """Should a later torch refuse the registration, segzoo still imports: no operators and a
    reason, which keep_aten_resize then raises."""
    from segzoo.models.layers import aten_resize

    def refuse(*args, **kwargs):
        raise TypeError("custom_op() got an unexpected keyword argument 'schema'")

    monkeypatch.setattr(torch.library, "custom_op", refuse)
    op, backward_op, why = aten_resize._register()
    assert op is None and backward_op is None
    assert why == "could not register its operators (TypeError: custom_op() got an unexpected keyword argument 'schema')"
