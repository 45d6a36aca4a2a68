"""The compile levers of gpu_train.py (``--compile-levers``): switches that change what
``torch.compile`` traces, values equal up to rounding, and the profile evidence that a lever
twin's steps ran with them (:func:`lever_evidence`).

* ``aten-resize``: ATen's bilinear resize kernels kept as extern operators instead of
  Inductor's decomposition, whose backward is a scatter-add
  (:mod:`segzoo.models.layers.aten_resize`);
* ``depthwise-taps``: depthwise convolutions as fused multiply-adds instead of cuDNN's grouped
  kernel (:mod:`segzoo.models.layers.depthwise_taps`).
"""

from __future__ import annotations

import contextlib

import torch

from segzoo.bench.timing import profile_run
from segzoo.models.layers.aten_resize import keep_aten_resize
from segzoo.models.layers.depthwise_taps import depthwise_as_taps

LEVERS = {"aten-resize": keep_aten_resize, "depthwise-taps": depthwise_as_taps}
# the operators whose profiled call counts show whether a lever changed what ran (lever_evidence)
RESIZE_OPS = ("segzoo::bilinear_resize", "segzoo::bilinear_resize_backward")
CONV_OP = "aten::convolution"
_ENGAGED = {True: "engaged", False: "NOT engaged", None: "not shown"}


def with_levers(step, levers: tuple[str, ...]):
    """``step`` run under the :data:`LEVERS` named (traced, and later guarded, with them on)."""
    if not levers:
        return step

    def run():
        with contextlib.ExitStack() as stack:
            for name in levers:
                stack.enter_context(LEVERS[name]())
            return step()
    return run


def profiled(step, device: torch.device) -> dict:
    """The profiler's table of 2 steps (top 12 operators) and the calls of the lever operators."""
    table, calls = profile_run(step, device, calls=2, top=12)
    return {"profile": table, "op_calls": {k: calls.get(k, 0) for k in (*RESIZE_OPS, CONV_OP)}}


def lever_evidence(row: dict, rows: list[dict]) -> dict[str, dict]:
    """Whether each lever of a profiled compiled twin changed what its 2 profiled steps ran, from
    operator counts: ``aten-resize`` called ``segzoo::bilinear_resize`` and its backward;
    ``depthwise-taps`` called ``aten::convolution`` fewer times than the same model's plain
    compiled twin (the depthwise convolutions became multiply-adds). Per lever: ``engaged``
    (True, False, or None when there is nothing to compare with) and the counts as ``why``."""
    plain = next((x for x in rows if x["candidate"] == row["candidate"] and x.get("compile")
                  and not x["levers"] and "op_calls" in x), None)
    calls = row["op_calls"]
    out = {}
    for lever in row["levers"]:
        if lever == "aten-resize":
            fwd, bwd = (calls[k] for k in RESIZE_OPS)
            out[lever] = {"engaged": fwd > 0 and bwd > 0,
                          "why": f"{RESIZE_OPS[0]} {fwd} calls, its backward {bwd}"}
        else:
            base = plain["op_calls"][CONV_OP] if plain else 0
            out[lever] = {"engaged": calls[CONV_OP] < base if base else None,
                          "why": f"{CONV_OP} {calls[CONV_OP]} calls"
                                 + (f" against {base} in the plain compiled twin" if base
                                    else " (no plain compiled twin's count to compare with)")}
    return out


def verdict(lever: str, evidence: dict) -> str:
    """One lever's entry of :func:`lever_evidence` as text: "aten-resize engaged (...)"."""
    return f"{lever} {_ENGAGED[evidence['engaged']]} ({evidence['why']})"
