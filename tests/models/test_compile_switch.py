"""The switch behind the compile levers (segzoo.models.layers.compile_switch)."""

from __future__ import annotations

import pytest
import torch

from segzoo.models.layers.compile_switch import CompileSwitch, _exporting


def traced_states(switch: CompileSwitch) -> list[bool]:
    """What ``switch.tracing()`` says while Dynamo traces a function (aot_eager backend)."""
    seen: list[bool] = []

    def f(x):
        seen.append(switch.tracing())
        return x + 1

    torch._dynamo.reset()
    torch.compile(f, backend="aot_eager")(torch.randn(3))
    return seen


def test_switch_is_on_only_while_compiling_and_when_enabled():
    switch = CompileSwitch("test_switch")
    with switch():
        assert not switch.tracing()  # eager
        assert traced_states(switch) == [True]
    assert traced_states(switch) == [False]


def test_export_check_reads_torchs_flag_not_the_function(monkeypatch):
    """torch 2.11's Dynamo answers ``torch.compiler.is_exporting()`` with True inside every
    ``torch.compile`` trace, which kept the levers off in compiled training there (their tests
    failed on torch 2.11); the check reads torch's export flag instead. Simulated in eager by a
    function that always says True (patching it for a compile would stop torch.compile itself)."""
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert _exporting() is False
    monkeypatch.setattr(torch.compiler, "_is_exporting_flag", True)
    assert _exporting() is True


def test_switch_refuses_to_turn_on_where_torch_cannot_honour_it():
    switch = CompileSwitch("keep_something", unavailable="needs torch >= 99")
    with pytest.raises(RuntimeError, match="keep_something needs torch >= 99.*leave the switch off"):
        with switch():
            pass
    with switch(False):  # turning it off stays possible
        assert not switch.enabled
