"""Off-by-default switches of what ``torch.compile`` traces (the compile levers of
:mod:`~segzoo.models.layers.aten_resize` and :mod:`~segzoo.models.layers.depthwise_taps`).

A layer asks :meth:`CompileSwitch.tracing` and computes the same values another way only while
Dynamo traces it: eager calls and ``torch.export`` (whose graphs must stay plain ATen for ONNX
and other runtimes) never see a switch. Dynamo guards on the switch's state, so a model compiled
under one setting and called under the other is traced again, not run with the wrong graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def _exporting() -> bool:
    """``torch.export`` is tracing. Reads torch's flag itself where it has one: Dynamo in torch 2.11
    folds a call of ``torch.compiler.is_exporting()`` to True inside every ``torch.compile`` trace
    (later torch reads the flag), which would keep the switches off in compiled training."""
    flag = getattr(torch.compiler, "_is_exporting_flag", None)
    if isinstance(flag, bool):
        return flag
    return getattr(torch.compiler, "is_exporting", lambda: False)()  # torch < 2.6: no export check


class CompileSwitch:
    """One switch: ``with switch():`` turns it on (``switch(False)``: off) and restores the
    previous state on exit, also after an error.

    Args:
        name: the public context manager's name, for the error message.
        unavailable: why this torch cannot honour the switch (empty: it can).

    Raises:
        RuntimeError: from ``switch()`` when ``unavailable`` is set (turning it off stays possible).
    """

    def __init__(self, name: str, unavailable: str = "") -> None:
        self.name = name
        self.unavailable = unavailable
        self.enabled = False

    @contextlib.contextmanager
    def __call__(self, enabled: bool = True) -> Iterator[None]:
        if enabled and self.unavailable:
            raise RuntimeError(f"{self.name} {self.unavailable}; this is torch {torch.__version__}: "
                               "upgrade torch or leave the switch off")
        saved, self.enabled = self.enabled, enabled
        try:
            yield
        finally:
            self.enabled = saved

    def tracing(self) -> bool:
        """The switch is on and Dynamo is tracing for ``torch.compile`` (not ``torch.export``)."""
        return self.enabled and torch.compiler.is_compiling() and not _exporting()
