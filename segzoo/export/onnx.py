"""ONNX export of semantic models (``segzoo export``) with dynamic batch, height and width.

The exported graph takes ``images`` (N, 3, H, W) float32, normalised as in training (the config's
``data.mean``/``data.std`` on 0..1 RGB), N, H and W all dynamic (H, W at least the model's
``min_input_size``), and returns ``logits`` (N, K, H, W) float32: the eval-mode output, already
resized to the input size (argmax over dim 1 gives the labels). Pre-processing (reading, the val
resize, normalisation) and the argmax are not in the graph.

How: ``torch.export.export`` with symbolic ``Dim``\\ s for N, H and W (strict: an operation that
would freeze a size to the export size is an :class:`ExportError` naming the guard), then
``torch.onnx.export`` of the exported program (the dynamo exporter, needs ``onnxscript``). Size
checks torch makes internally about a dimension being 1 (memory-layout choices, no effect on values)
are treated as "not 1" (``backed_size_oblivious``). The models compute their size-dependent steps
with tensor operations (:mod:`segzoo.models.layers.exportable`), so one graph serves every size.

Verification (on by default) runs the graph with onnxruntime at three sizes other than the export
size, odd ones included, against PyTorch, and fails if any logit differs by more than ``atol``.
Instance models (Mask R-CNN, Keypoint R-CNN) are exported by :mod:`segzoo.export.detection`
(one image per call, TorchScript-based exporter), which :func:`export_onnx` dispatches to.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from segzoo.errors import ExportError
from segzoo.versions import release

#: Sizes tried by ``verify`` (the first three that differ from the export size and fit the model).
VERIFY_SIZES: tuple[tuple[int, int], ...] = ((97, 131), (360, 480), (513, 513), (241, 321))


def require_module(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ExportError(f"ONNX export needs the '{module}' package: pip install 'segzoo[onnx]'") from None


def _guards(exc: BaseException) -> str:
    """The lines of a torch.export failure that say which size was frozen, else its first line."""
    text = str(exc)
    lines = [ln.strip(" -") for ln in text.splitlines()
             if "Not all values" in ln or "specialized it to be a constant" in ln]
    if lines:
        return "; ".join(lines[:4])
    first = next((ln for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return re.sub(r"\x1b\[[0-9;]*m", "", first)[:500]


#: The first torch whose max-pooling shape inference keeps H and W symbolic: torch 2.11 and 2.12
#: decide whether (H + 2p - k) divides by the stride, which freezes the parity of H and W in
#: every model with a max pooling (ResNet stems, VGG, U-Net), so dynamic-size export fails there.
DYNAMIC_POOLING_TORCH = (2, 13)


def dynamic_pooling_supported() -> bool:
    """This torch traces max pooling with symbolic H and W (torch >= :data:`DYNAMIC_POOLING_TORCH`)."""
    return release(torch.__version__) >= DYNAMIC_POOLING_TORCH


def _old_torch_hint(text: str) -> str:
    """Advice for a torch.export failure on a parity guard under torch < 2.13 (else '')."""
    if dynamic_pooling_supported() or "% 2) == 0" not in text:
        return ""
    return (f" (torch {torch.__version__}'s shape inference of max pooling fixes whether H and W are "
            "even; torch 2.13 and later export with dynamic height and width: pip install 'torch>=2.13')")


def trace_dynamic(model: nn.Module, example: Tensor, min_size: int = 2) -> tuple[torch.export.ExportedProgram, int]:
    """``torch.export.export`` (non-strict) of a (N, 3, H, W) -> tensors module with N in
    1..4096 and H, W in ``min_size``..16384 symbolic; size checks of a dimension being 1 are
    treated as "not 1" (``backed_size_oblivious``). At the very minimum size the coarsest feature
    map is 1x1, where torch's kernels take other paths: the graph then starts one pixel above it.

    Returns:
        (exported program, smallest H and W it accepts).

    Raises:
        ExportError: a size would be frozen; the message names the guard (and, on torch < 2.13, the
            max-pooling limitation of :data:`DYNAMIC_POOLING_TORCH`).
    """
    from torch.fx.experimental import _config as shape_config

    def trace(lo: int):
        dims = {0: torch.export.Dim("batch", min=1, max=4096),
                2: torch.export.Dim("height", min=lo, max=16384),
                3: torch.export.Dim("width", min=lo, max=16384)}
        with torch.no_grad(), shape_config.patch(backed_size_oblivious=True):
            return torch.export.export(model, (example,), dynamic_shapes=(dims,), strict=False)

    lo = max(2, int(min_size))
    try:
        try:
            return trace(lo), lo
        except Exception as exc:
            if "!= 1" not in str(exc) or min(example.shape[-2:]) <= lo:
                raise
            return trace(lo + 1), lo + 1
    except Exception as exc:  # torch raises several types; all mean "not exportable as is"
        raise ExportError(f"torch.export cannot trace {type(model).__name__} with dynamic batch, height "
                          f"and width: {_guards(exc)}{_old_torch_hint(str(exc))}") from exc


def export_program(model: nn.Module, path: str | os.PathLike, size: tuple[int, int], *,
                   min_size: int = 2, opset: int = 18, input_name: str = "images",
                   output_names: Sequence[str] | None = None, optimize: bool = True) -> tuple[Path, int]:
    """Export ``model`` (one (N, 3, H, W) input) to ``path`` with N, H, W dynamic.

    Returns:
        (path, smallest H and W the graph accepts): ``min_size``, or ``min_size + 1`` where the
        model's coarsest feature map would be 1x1 at ``min_size`` (torch's kernels branch there).

    Args:
        model: eval-mode module.
        path: ``.onnx`` file to write (parent folders created).
        size: (H, W) of the example input (batch 2).
        min_size: smallest H and W the graph accepts (at least 2).
        opset: ONNX opset version.
        input_name, output_names: graph input / output names (default output names: torch's).
        optimize: run the ONNX graph optimizer (constant folding, redundant nodes removed; about
            half the conversion time).

    Raises:
        ExportError: torch.export froze a size (the message names the condition), the ONNX
            conversion failed, or a missing package.
    """
    require_module("onnx")
    require_module("onnxscript")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = int(size[0]), int(size[1])
    lo = max(2, int(min_size))
    if min(h, w) < lo:
        raise ExportError(f"export size {h}x{w} is below the model's minimum input size {lo}")
    example = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    program, lo = trace_dynamic(model, example, lo)
    try:
        onnx_program = torch.onnx.export(program, (example,), input_names=[input_name],
                                         output_names=list(output_names) if output_names else None,
                                         opset_version=opset, dynamo=True, verbose=False,
                                         optimize=optimize)
    except Exception as exc:
        raise ExportError(f"ONNX conversion of {type(model).__name__} failed: {_guards(exc)}") from exc
    onnx_program.save(str(path))
    import onnx

    onnx.checker.check_model(str(path))
    return path, lo


def verify_sizes(size: tuple[int, int], min_size: int = 1,
                 candidates: Sequence[tuple[int, int]] = VERIFY_SIZES) -> list[tuple[int, int]]:
    """The first three ``candidates`` other than ``size`` with both sides >= ``min_size``."""
    out = [tuple(map(int, s)) for s in candidates
           if tuple(map(int, s)) != tuple(size) and min(s) >= min_size]
    return out[:3]  # type: ignore[return-value]


def export_onnx(model: nn.Module, path: str | os.PathLike, size: tuple[int, int], *,
                opset: int = 18, verify: bool = True, atol: float = 1e-4,
                sizes: Sequence[tuple[int, int]] | None = None, optimize: bool = True,
                images: Sequence[torch.Tensor] | None = None) -> dict:
    """Export a semantic model to ONNX with dynamic N, H, W (see the module docstring); an instance
    model (Mask R-CNN, Keypoint R-CNN) goes to :func:`segzoo.export.detection.export_detection`
    (one image of any size in; boxes, labels, scores, full-image masks out; ``atol`` and
    ``optimize`` do not apply, ``sizes`` are those of its generated verification images).

    Args:
        model: semantic model (``model.task`` "semantic"); put in eval mode.
        path: output ``.onnx`` file (parent folders created).
        size: (H, W) of the example input the graph is traced with.
        opset: ONNX opset version.
        verify: run the graph with onnxruntime at ``sizes`` and compare with PyTorch.
        atol: largest allowed absolute logit difference when verifying (fp32).
        sizes: the (H, W) sizes to verify at (default :func:`verify_sizes`: three of
            :data:`VERIFY_SIZES` other than ``size``).
        optimize: run the ONNX graph optimizer (see :func:`export_program`).
        images: instance models only: (3, H, W) float 0..1 images to verify on instead of
            generated ones at ``sizes`` (e.g. the validation images).

    Returns:
        ``{"path": Path, "min_size": smallest H, W the graph takes, "sizes": [(H, W), ...],
        "diffs": [max |diff| per size], "logit_scales": [max |PyTorch logit| per size],
        "max_abs_diff": float | None}`` (``None`` and no sizes when not verified); for an
        instance model :func:`~segzoo.export.detection.export_detection`'s dict (``diffs``: the
        largest box difference in pixels per image).

    Raises:
        ExportError: an instance model that is not an R-CNN detector, a size-freezing operation,
            a missing dependency, or logits that differ by more than ``atol`` (the message gives
            the largest difference and its size).
    """
    if getattr(model, "task", "semantic") == "instance":
        if not all(hasattr(model, m) for m in ("transform", "rpn", "roi_heads")):
            raise ExportError(f"{type(model).__name__}: only semantic models and R-CNN detectors (torchvision's "
                              "detection API: transform, rpn, roi_heads) are exported to ONNX")
        from segzoo.export.detection import export_detection

        return export_detection(model, path, size, opset=opset, verify=verify, sizes=sizes, images=images)
    model = model.eval()
    min_size = int(getattr(model, "min_input_size", 0) or 0)
    path, min_size = export_program(model, path, size, min_size=min_size, opset=opset,
                                    output_names=["logits"], optimize=optimize)
    if not verify:
        return {"path": path, "min_size": min_size, "sizes": [], "diffs": [], "max_abs_diff": None}
    require_module("onnxruntime")
    sizes = [tuple(s) for s in sizes] if sizes is not None else verify_sizes(size, min_size)
    session = onnxruntime_session(path)
    diffs, scales = [], []
    for i, (h, w) in enumerate(sizes):
        x = torch.randn(1 + i % 2, 3, h, w, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(["logits"], {"images": x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"{path}: at {h}x{w} onnxruntime returned logits {got.shape}, PyTorch {ref.shape}")
        diffs.append(float(np.abs(got - ref).max()))
        scales.append(float(np.abs(ref).max()))
    worst = int(np.argmax(diffs)) if diffs else 0
    if diffs and not diffs[worst] <= atol:
        h, w = sizes[worst]
        raise ExportError(f"{path}: onnxruntime logits differ from PyTorch by up to {diffs[worst]:.3g} "
                          f"(> {atol}) at {h}x{w}; per size: "
                          + ", ".join(f"{a}x{b}: {d:.3g}" for (a, b), d in zip(sizes, diffs)))
    return {"path": path, "min_size": min_size, "sizes": sizes, "diffs": diffs, "logit_scales": scales,
            "max_abs_diff": max(diffs) if diffs else None}


def onnxruntime_session(path: str | os.PathLike):
    """An onnxruntime CPU ``InferenceSession`` for an exported model."""
    ort = require_module("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnxruntime_logits(path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Run an exported model with onnxruntime on the CPU: images (N, 3, H, W) float32 -> logits."""
    return onnxruntime_session(path).run(["logits"], {"images": images.astype(np.float32)})[0]
