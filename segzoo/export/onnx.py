"""ONNX export of semantic models (``segzoo export``).

The exported graph takes ``images`` (N, 3, H, W) float32, normalised as in training, with the
batch dimension dynamic and H, W fixed to the export size, and returns ``logits`` (N, K, H, W)
(eval-mode output; argmax over dim 1 gives the labels). Export uses ``torch.onnx.export`` (the
dynamo exporter, which needs ``onnxscript``); the result is checked with ``onnx.checker`` and, when
``onnxruntime`` is installed, compared with PyTorch on a random batch. Instance models are not
exported (torchvision's detection post-processing is data dependent).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segzoo.errors import SegzooError


class ExportError(SegzooError, RuntimeError):
    """The model cannot be exported, or an optional dependency is missing."""


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ExportError(f"ONNX export needs the '{module}' package: pip install 'segzoo[onnx]'") from None


def export_onnx(model: nn.Module, path: str | os.PathLike, size: tuple[int, int], *,
                opset: int = 18, verify: bool = True, atol: float = 1e-4) -> dict:
    """Export a semantic model to ONNX (see the module docstring).

    Args:
        model: semantic model (``model.task`` "semantic"); put in eval mode.
        path: output ``.onnx`` file (parent folders created).
        size: (H, W) of the exported input.
        opset: ONNX opset version.
        verify: run the graph with onnxruntime (if installed) on a random batch of 2 and compare.
        atol: largest allowed absolute logit difference when verifying.

    Returns:
        ``{"path": Path, "max_abs_diff": float | None}`` (None when onnxruntime is absent).

    Raises:
        ExportError: an instance model, a missing dependency, or outputs that disagree.
    """
    if getattr(model, "task", "semantic") != "semantic":
        raise ExportError("only semantic models are exported to ONNX")
    _require("onnx")
    _require("onnxscript")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    h, w = int(size[0]), int(size[1])
    example = torch.randn(2, 3, h, w)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        program = torch.onnx.export(model, (example,), input_names=["images"], output_names=["logits"],
                                    dynamic_shapes={"images": {0: batch}}, opset_version=opset,
                                    dynamo=True, verbose=False)
    program.save(str(path))
    import onnx

    onnx.checker.check_model(str(path))
    diff = None
    if verify:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return {"path": path, "max_abs_diff": None}
        x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = model(x).numpy()
        diff = float(np.abs(onnxruntime_logits(path, x.numpy()) - ref).max())
        if not diff <= atol:
            raise ExportError(f"{path}: onnxruntime logits differ from PyTorch by {diff:.3g} (> {atol})")
    return {"path": path, "max_abs_diff": diff}


def onnxruntime_logits(path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Run an exported model with onnxruntime on the CPU: images (N, 3, H, W) float32 -> logits."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": images.astype(np.float32)})[0]
