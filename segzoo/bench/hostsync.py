"""Counting what a forward pass asks of a GPU, on any device: kernel launches and host syncs.

At batch 1 a GPU spends little time computing a detector's heads; what costs is the number of
kernels launched (a few microseconds each, whatever their size) and the number of times the host
waits for the GPU to read a result back (a *host sync*: every queued kernel must finish, then the
launch queue is empty and the GPU idles while Python issues the next one). Both are properties of
the code, not of the machine, so they can be counted on the CPU, where a GPU is not at hand:

* **operators**: every ATen operator dispatched that is not a view (a view launches no kernel);
  on a GPU each launches one kernel or more;
* **host syncs**: operators whose CUDA implementation copies data to the host before it returns:
  ``item``/``_local_scalar_dense``/``is_nonzero`` (``.item()``, ``int(t)``, ``bool(t)``, Python
  ``if t``),
  ``nonzero`` and what calls it (``torch.where(cond)``, indexing or assigning with a boolean
  mask), ``masked_select``, ``unique``, ``repeat_interleave`` without ``output_size``,
  ``bincount``, ``equal``, torchvision's ``nms`` (its CUDA kernel reads the suppression mask back),
  device-to-host copies, and ``Tensor.tolist()``/``.numpy()`` (wrapped and counted once each: on
  the CPU they dispatch no operator, on a GPU the copy they dispatch is not counted again).

:class:`OpCounter` attributes each operator to the innermost *phase* running: modules named in
``phases`` (forward hooks) and methods wrapped by :meth:`OpCounter.phase_method`.
:func:`count_detector` does it for a torchvision-style detector, phase by phase. Used by
``benchmarks/detector_ops.py``; PyTorch's ``torch.cuda.set_sync_debug_mode`` is the GPU-only
equivalent for syncs.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

#: operators that read device data back to the host on CUDA, by ``OpOverloadPacket`` name
SYNC_OPS = frozenset({
    "aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::nonzero", "aten::nonzero_numpy",
    "aten::nonzero_static", "aten::argwhere", "aten::masked_select",
    "aten::unique", "aten::_unique", "aten::_unique2", "aten::unique_dim", "aten::unique_consecutive",
    "aten::bincount", "aten::equal", "torchvision::nms",
})
_INDEX_OPS = frozenset({"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"})


@dataclass
class PhaseCounts:
    """What one phase dispatched: ``operators`` (non-view ATen operators, each at least one kernel
    launch on a GPU) and ``syncs`` (host syncs by operator name)."""

    operators: int = 0
    syncs: Counter = field(default_factory=Counter)

    @property
    def total_syncs(self) -> int:
        return sum(self.syncs.values())

    def to_dict(self) -> dict:
        return {"operators": self.operators, "host_syncs": self.total_syncs, "syncs_by_op": dict(self.syncs)}


def _is_sync(name: str, func, args, kwargs) -> bool:
    if name in SYNC_OPS:
        return True
    if name == "aten::where":  # where(condition) is nonzero(); where(condition, x, y) is not
        return func._overloadname == "default"
    if name == "aten::repeat_interleave":
        return kwargs.get("output_size") is None and (len(args) < 4 or args[3] is None)
    if name in _INDEX_OPS and len(args) > 1:  # a boolean mask index becomes nonzero() on CUDA
        return any(isinstance(i, Tensor) and i.dtype == torch.bool for i in (args[1] or ()))
    if name == "aten::copy_":  # device -> host
        return args[0].device.type == "cpu" and isinstance(args[1], Tensor) and args[1].device.type != "cpu"
    if name in ("aten::_to_copy", "aten::to"):
        targets = [kwargs.get("device"), *args[1:]]
        to_cpu = any(isinstance(d, (str, torch.device)) and torch.device(d).type == "cpu" for d in targets)
        return to_cpu and isinstance(args[0], Tensor) and args[0].device.type != "cpu"
    return False


class OpCounter(TorchDispatchMode):
    """A dispatch mode that counts operators and host syncs per phase (see the module docs).

    Args:
        phases: ``{name: module}`` whose forwards are phases (nested phases: the innermost wins).
        root: name of the phase outside every other.

    Use as a context manager around the forward; read :attr:`counts` (``{phase: PhaseCounts}``, in
    the order phases first ran).
    """

    def __init__(self, phases: dict[str, nn.Module] | None = None, root: str = "other") -> None:
        super().__init__()
        self.stack = [root]
        self.counts: dict[str, PhaseCounts] = {}
        self._in_readback = False
        self.phases = dict(phases or {})
        self._handles = []
        self._patched: list[tuple[object, str, Callable]] = []

    def _pop(self) -> None:
        self.stack.pop()  # returns None: a forward hook's return value would replace the output

    def phase_method(self, owner: object, method: str, name: str) -> None:
        """Make ``owner.method`` (an instance's bound method) a phase named ``name`` until exit."""
        original = getattr(owner, method)

        @functools.wraps(original)
        def wrapped(*args, **kwargs):
            self.stack.append(name)
            try:
                return original(*args, **kwargs)
            finally:
                self.stack.pop()

        setattr(owner, method, wrapped)
        self._patched.append((owner, method, original))

    def _phase(self) -> PhaseCounts:
        return self.counts.setdefault(self.stack[-1], PhaseCounts())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        if not func.is_view:
            phase = self._phase()
            phase.operators += 1
            if not self._in_readback and _is_sync(name, func, args, kwargs):
                phase.syncs[name.split("::")[-1]] += 1
        return func(*args, **kwargs)

    def __enter__(self):
        for name, module in self.phases.items():  # hooked only while counting
            self._handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self.stack.append(n)))
            self._handles.append(module.register_forward_hook(lambda m, a, o: self._pop()))
        for method in ("tolist", "numpy"):  # no operator dispatched for a CPU tensor's read-back
            original = getattr(Tensor, method)

            def counted(t, *a, _orig=original, _name=method, **k):
                self._phase().syncs[_name] += 1  # one sync, whatever copy it dispatches on a GPU
                self._in_readback = True
                try:
                    return _orig(t, *a, **k)
                finally:
                    self._in_readback = False

            setattr(Tensor, method, counted)
            self._patched.append((Tensor, method, original))
        return super().__enter__()

    def __exit__(self, *exc):
        out = super().__exit__(*exc)
        for owner, method, original in reversed(self._patched):
            if owner is Tensor:
                setattr(owner, method, original)
            else:
                delattr(owner, method)  # the instance attribute shadowed the class's method
        self._patched.clear()
        for h in self._handles:
            h.remove()
        self._handles.clear()
        return out


#: a torchvision-style detector's phases: attribute paths under the model, in running order
DETECTOR_PHASES: tuple[tuple[str, str], ...] = (
    ("transform", "transform"), ("backbone", "backbone"), ("rpn", "rpn"),
    ("roi_heads", "roi_heads"), ("box_roi_pool", "roi_heads.box_roi_pool"),
    ("box_head", "roi_heads.box_head"), ("box_predictor", "roi_heads.box_predictor"),
    ("mask_roi_pool", "roi_heads.mask_roi_pool"), ("mask_head", "roi_heads.mask_head"),
    ("mask_predictor", "roi_heads.mask_predictor"), ("keypoint_roi_pool", "roi_heads.keypoint_roi_pool"),
    ("keypoint_head", "roi_heads.keypoint_head"), ("keypoint_predictor", "roi_heads.keypoint_predictor"),
)
#: methods that are phases of their own: (phase, owner path, method)
DETECTOR_METHODS: tuple[tuple[str, str, str], ...] = (
    ("rpn.filter_proposals", "rpn", "filter_proposals"),
    ("roi_heads.postprocess_detections", "roi_heads", "postprocess_detections"),
    ("transform.postprocess", "transform", "postprocess"),
)


def _get(model: nn.Module, path: str):
    obj = model
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def count_detector(model: nn.Module, images: Sequence[Tensor]) -> dict[str, PhaseCounts]:
    """Operators and host syncs of one eval forward of a torchvision-style detector (segzoo's Mask
    R-CNN / Keypoint R-CNN or torchvision's), phase by phase (:data:`DETECTOR_PHASES`,
    :data:`DETECTOR_METHODS`; ``"other"``: the model's own glue).

    Args:
        model: the detector; put in eval mode here.
        images: list of (3, H, W) float images in 0..1 on the model's device.

    Returns:
        ``{phase: PhaseCounts}`` in the order the phases first ran. A phase's counts exclude its
        nested phases' (``roi_heads`` is what the RoI heads do outside their sub-modules: matching
        nothing at eval, the glue and the mask probabilities).
    """
    model.eval()
    phases = {name: m for name, path in DETECTOR_PHASES if isinstance(m := _get(model, path), nn.Module)}
    counter = OpCounter(phases, root="other")
    with torch.inference_mode(), counter:
        for name, path, method in DETECTOR_METHODS:
            owner = _get(model, path)
            if owner is not None and hasattr(owner, method):
                counter.phase_method(owner, method, name)
        model(list(images))
    return counter.counts


def totals(counts: dict[str, PhaseCounts]) -> PhaseCounts:
    """The sum over phases."""
    out = PhaseCounts()
    for c in counts.values():
        out.operators += c.operators
        out.syncs.update(c.syncs)
    return out
