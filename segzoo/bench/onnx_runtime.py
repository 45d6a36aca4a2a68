"""ONNX Runtime as a runtime row of ``segzoo bench`` (``--onnxruntime``): the same model, exported
with :func:`segzoo.export.export_onnx` (dynamic N, H, W; not verified there, the worker compares
its output with the eager model's on the timed input) and run by onnxruntime's CPU execution
provider with as many intra-op threads as torch has, so both runtimes get the same cores.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from segzoo.errors import ExportError


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU ``InferenceSession`` of ``path`` with ``threads`` intra-op threads (and
    one inter-op thread; default: torch's current thread count), all graph optimizations on.

    Raises:
        ExportError: onnxruntime is not installed (``pip install 'segzoo[onnx]'``).
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("the onnxruntime row needs onnxruntime: pip install 'segzoo[onnx]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OrtRunner(nn.Module):
    """A semantic model exported to ONNX and run by onnxruntime: images (N, 3, H, W) float ->
    logits (N, K, H, W) float32 (CPU tensors). Built from the eager ``model``, exported to a
    temporary folder that is deleted once onnxruntime has loaded the file.

    Raises:
        ExportError: an instance model (not exported), a model that does not export, or a
            missing ``onnx``/``onnxruntime`` package.
    """

    task = "semantic"

    def __init__(self, model: nn.Module, size: tuple[int, int], threads: int | None = None) -> None:
        super().__init__()
        from segzoo.export import export_onnx

        if getattr(model, "task", "semantic") != "semantic":
            raise ExportError(f"{type(model).__name__} is an instance model: not exported to ONNX")
        with tempfile.TemporaryDirectory(prefix="segzoo-bench-onnx-") as folder:  # the session reads it all
            path = Path(folder) / "model.onnx"
            export_onnx(model, path, (int(size[0]), int(size[1])), verify=False)
            self.session = ort_session(path, threads)
        self.num_classes = getattr(model, "num_classes", None)

    def forward(self, images: Tensor) -> Tensor:
        x = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(["logits"], {"images": x})[0])
