"""Bilinear resize as opaque operators, so that ``torch.compile`` keeps ATen's kernels for it.

Inductor (``torch.compile``'s default backend) decomposes ``F.interpolate(mode="bilinear")``
into gathers and derives its backward as a scatter-add (``index_put`` with accumulation). In
run 5 of the GPU check (H200, torch 2.11, docs/benchmarks.md) the two scatter kernels of
DeepLab v3+ R50's compiled bf16 + channels_last training step (the decoder's 4x upsampling of
ASPP and the final 4x upsampling of the logits) took 21% of its GPU time, while eager's ATen
backward kernels did not reach its top 12 operators. The two operators here,
``segzoo::bilinear_resize`` (called by :func:`bilinear_resize`) and
``segzoo::bilinear_resize_backward``, are registered with ``torch.library.custom_op`` (torch >=
2.4): Inductor calls them as extern kernels instead of decomposing
them, and they run ATen's ``upsample_bilinear2d`` and ``upsample_bilinear2d_backward``, so
their results equal eager's bit for bit.

:func:`keep_aten_resize` switches them on for :func:`segzoo.models.layers.resize` while a
``torch.compile``'d model is traced for training (input requiring gradients, not under
``torch.export``, whose graphs must stay plain ATen for ONNX and other runtimes). It is off
by default: whether it pays on a GPU is what gpu_train.py's ``--compile-levers aten-resize``
measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._prims_common import suggest_memory_format

from segzoo.models.layers.compile_switch import CompileSwitch


def _layout(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def _bilinear_resize(x: Tensor, size: Sequence[int], channels_last: bool) -> Tensor:
    out = F.interpolate(x, size=list(size), mode="bilinear", align_corners=False)
    return out.contiguous(memory_format=_layout(channels_last))


def _bilinear_resize_fake(x: Tensor, size: Sequence[int], channels_last: bool) -> Tensor:
    return x.new_empty((*x.shape[:2], *size)).contiguous(memory_format=_layout(channels_last))


def _bilinear_resize_backward(grad: Tensor, input_size: Sequence[int], channels_last: bool) -> Tensor:
    out = torch.ops.aten.upsample_bilinear2d_backward(grad, list(grad.shape[-2:]), list(input_size), False)
    return out.contiguous(memory_format=_layout(channels_last))


def _bilinear_resize_backward_fake(grad: Tensor, input_size: Sequence[int], channels_last: bool) -> Tensor:
    return grad.new_empty(tuple(input_size)).contiguous(memory_format=_layout(channels_last))


def _setup_context(ctx, inputs: tuple, output: Tensor) -> None:
    ctx.input_size, ctx.channels_last = tuple(inputs[0].shape), inputs[2]


def _backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
    return _resize_backward_op(grad, ctx.input_size, ctx.channels_last), None, None


def _register() -> tuple:
    """The two operators, or (None, None, why) where this torch cannot register them: the
    switch is then unavailable, and importing segzoo still works."""
    if not hasattr(torch.library, "custom_op"):
        return None, None, "needs torch >= 2.4 (torch.library.custom_op)"
    try:  # explicit schemas: no dependence on how this torch reads type annotations
        op = torch.library.custom_op("segzoo::bilinear_resize", _bilinear_resize, mutates_args=(),
                                     schema="(Tensor x, SymInt[] size, bool channels_last) -> Tensor")
        op.register_fake(_bilinear_resize_fake)
        backward_op = torch.library.custom_op(
            "segzoo::bilinear_resize_backward", _bilinear_resize_backward, mutates_args=(),
            schema="(Tensor grad, SymInt[] input_size, bool channels_last) -> Tensor")
        backward_op.register_fake(_bilinear_resize_backward_fake)
        op.register_autograd(_backward, setup_context=_setup_context)
    except Exception as exc:  # an API change in a later torch: the lever off, the zoo intact
        return None, None, f"could not register its operators ({type(exc).__name__}: {exc})"
    return op, backward_op, ""


_resize_op, _resize_backward_op, _why = _register()
_SWITCH = CompileSwitch("keep_aten_resize", unavailable=_why)


def bilinear_resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """(B, C, H, W) -> (B, C, H', W'), ``size`` = (H', W'): the values of ``F.interpolate(x,
    size, mode="bilinear", align_corners=False)`` through the operator ``segzoo::bilinear_resize``
    (ATen's ``upsample_bilinear2d``; its gradient, ``segzoo::bilinear_resize_backward``, is
    ATen's ``upsample_bilinear2d_backward``), any float dtype.

    The output, and the gradient returned for ``x``, are channels_last when ``x``'s strides are
    in NHWC order as the caller (or Dynamo's trace) sees them, else contiguous. The layout is an
    argument of the operators, not read from their inputs at run time: Inductor may hand an
    extern operator its input in another layout than the traced one (a channel slice of a
    channels_last gradient where the trace had a contiguous one), and the result must keep the
    layout its fake kernel promised.

    Raises:
        RuntimeError: where the operators could not be registered (torch older than 2.4).
    """
    if _resize_op is None:
        raise RuntimeError(f"bilinear_resize {_SWITCH.unavailable}; this is torch {torch.__version__}")
    return _resize_op(x, list(size), suggest_memory_format(x) == torch.channels_last)


def keep_aten_resize(enabled: bool = True) -> AbstractContextManager[None]:
    """While active, :func:`segzoo.models.layers.resize` routes bilinear resizes that
    ``torch.compile`` traces for training through :func:`bilinear_resize` (ATen's kernels,
    opaque to Inductor) instead of ``F.interpolate`` (decomposed by Inductor).

    Eager calls, inference (no input requiring gradients) and ``torch.export`` are unaffected.
    Dynamo guards on the setting, so a model compiled under one setting and called under the
    other is traced again, not run with the wrong graph
    (:class:`~segzoo.models.layers.compile_switch.CompileSwitch`).

    Raises:
        RuntimeError: ``enabled`` where the operators could not be registered (torch older than
            2.4, which has no ``torch.library.custom_op``).
    """
    return _SWITCH(enabled)


def aten_resize_enabled() -> bool:
    """Whether :func:`keep_aten_resize` is active."""
    return _SWITCH.enabled


def use_aten_resize(x: Tensor) -> bool:
    """Whether :func:`segzoo.models.layers.resize` should call :func:`bilinear_resize` on
    ``x``: the switch is on, Dynamo is tracing (not exporting) and ``x`` requires gradients."""
    return _SWITCH.tracing() and x.requires_grad and torch.is_grad_enabled()
