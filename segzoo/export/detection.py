"""ONNX export of instance models (Mask R-CNN, its joint keypoint variant, Keypoint R-CNN) for images
of any size, checked against PyTorch with onnxruntime.

The graph takes ``image``: one float32 (3, H, W) RGB image scaled to 0..1, H and W dynamic (not
normalised: the graph normalises it, as the PyTorch model does). It contains the whole eval-mode
model: normalisation with the model's ``transform.image_mean/std``, the resize of the shorter side
to ``min_size`` (the longer at most ``max_size``), padding to a multiple of 32, backbone, FPN, RPN
(top-k, NMS), RoI heads (score threshold, per-class NMS, ``box_detections_per_img``), boxes scaled
back to the input's pixels and masks pasted into the full image. Outputs, N detections sorted by
score (N = 0 when there are none):

* ``boxes`` (N, 4) float32 XYXY in the input image's pixels,
* ``labels`` (N,) int64 class indices (1..num_classes-1),
* ``scores`` (N,) float32,
* ``masks`` (N, 1, H, W) float32 mask probabilities at the input's size (threshold at 0.5),
* with a keypoint head also ``keypoints`` (N, K, 3) ``[x, y, 1]`` and ``keypoints_scores`` (N, K).

Not in the graph: reading the image (EXIF orientation, RGB conversion), the config's data transforms
(Mask R-CNN configs have none at eval), the mask threshold. One image per call: the exporter unrolls
a list of images into a fixed number of inputs, so a batch is a loop over images (what
:class:`~segzoo.export.runtime.OnnxRuntimeDetector` does).

How: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``, ``dynamic_axes`` on
H, W and the detection count), for which torchvision writes its detection models' data-dependent
steps (NMS, top-k, RoIAlign over pyramid levels, mask pasting) as traceable tensor code. segzoo's own
parts keep sizes symbolic: the eval resize computes its output size from the input's shape in
float64 as eager PyTorch does (:func:`segzoo.models.detectors.transform.traced_resize`), and sizes
come from ``.shape`` rather than ``len()``. The dynamo exporter (``torch.export``) stops at
torchvision's ``batched_nms`` (a Python ``if`` on the data-dependent proposal count), see
docs/deployment.md.

Verification compares onnxruntime with PyTorch image by image (:func:`compare_detections`): the
same detections above a score threshold (matched by label and box overlap), the largest box
coordinate difference, the smallest mask IoU (masks thresholded at 0.5) and, with keypoints, the
largest keypoint difference.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from segzoo.errors import ExportError
from segzoo.export.onnx import onnxruntime_session, require_module

OUTPUTS = ("boxes", "labels", "scores", "masks")
KEYPOINT_OUTPUTS = ("keypoints", "keypoints_scores")
OUTPUT_SHAPES = {"boxes": "N x 4", "labels": "N", "scores": "N", "masks": "N x 1 x H x W",
                 "keypoints": "N x K x 3", "keypoints_scores": "N x K"}
#: (H, W) of the images :func:`export_detection` verifies at by default (odd ones, portrait and landscape).
DETECTION_VERIFY_SIZES: tuple[tuple[int, int], ...] = ((97, 131), (240, 181), (333, 500))


def output_names(model: nn.Module) -> tuple[str, ...]:
    """The graph's outputs for ``model``: :data:`OUTPUTS`, plus :data:`KEYPOINT_OUTPUTS` when it
    predicts keypoints, minus ``masks`` when it has no mask branch (Keypoint R-CNN)."""
    heads = model.roi_heads
    names = tuple(n for n in OUTPUTS if n != "masks" or getattr(heads, "mask_predictor", None) is not None)
    if getattr(heads, "keypoint_predictor", None) is not None:
        names += KEYPOINT_OUTPUTS
    return names


class SingleImageDetector(nn.Module):
    """``model([image])[0]`` as a tuple of tensors in :func:`output_names` order: the module traced
    for ONNX. ``forward(image)`` takes one (3, H, W) float image in 0..1."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.names = output_names(model)

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        out = self.model([image])[0]
        return tuple(out[n] for n in self.names)


def _dynamic_axes(names: Sequence[str]) -> dict[str, dict[int, str]]:
    axes = {"image": {1: "height", 2: "width"}}
    for n in names:
        axes[n] = {0: "detections", 2: "height", 3: "width"} if n == "masks" else {0: "detections"}
    return axes


def example_image(height: int, width: int, seed: int = 0) -> Tensor:
    """A (3, H, W) float image in 0..1 with structure a detector reacts to: a smooth background and
    a few filled rectangles and ellipses of random colours (deterministic for ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    base = torch.rand(3, 1, 1, generator=g)
    image = (base * 0.6 + 0.2 * torch.stack([yy, xx, (yy + xx) / 2])).clone()
    for k in range(4):
        cy, cx = torch.rand(2, generator=g).tolist()
        ry, rx = (0.08 + 0.2 * torch.rand(2, generator=g)).tolist()
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1 if k % 2 else \
            ((yy - cy).abs() <= ry) & ((xx - cx).abs() <= rx)
        image = torch.where(inside, torch.rand(3, 1, 1, generator=g), image)
    return (image + 0.03 * torch.randn(3, height, width, generator=g)).clamp(0, 1)


def export_program(model: nn.Module, path: str | os.PathLike, size: tuple[int, int], *,
                   opset: int = 18) -> tuple[Path, tuple[str, ...]]:
    """Trace ``model`` (eval mode) on one image of ``size`` and write the ONNX graph.

    Returns:
        (path, output names).

    Raises:
        ExportError: the tracing or the conversion failed (the message gives torch's error), or
            ``onnx`` is missing.
    """
    require_module("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = SingleImageDetector(model.eval()).eval()
    image = example_image(int(size[0]), int(size[1]))
    names = module.names
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer's notes on torchvision's deliberate constants and the exporter's deprecation
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (image,), str(path), dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=list(names),
                              dynamic_axes=_dynamic_axes(names))
    except Exception as exc:  # the tracer and the converter raise several types
        raise ExportError(f"ONNX export of {type(model).__name__} failed: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0][:500]}") from exc
    import onnx

    onnx.checker.check_model(str(path))
    return path, names


def mask_ious(ref: np.ndarray, got: np.ndarray, margin: float = 1e-3) -> tuple[float, float]:
    """(IoU of the two probability masks thresholded at 0.5, the same IoU counting only pixels
    whose PyTorch probability is more than ``margin`` from 0.5); 1.0 for two empty masks.

    The second is the one verified: a pixel whose probability is within float32 rounding of the
    threshold can land on either side of it (untrained heads produce whole rows of such pixels);
    for a trained model the two agree."""
    a, b = ref > 0.5, got > 0.5
    decided = np.abs(ref - 0.5) > margin

    def iou(m):
        union = int(((a | b) & m).sum())
        return 1.0 if union == 0 else float((a & b & m).sum()) / union

    return iou(np.ones_like(a)), iou(decided)


def compare_detections(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], *, score_threshold: float = 0.5,
                       margin: float = 1e-4, max_detections: int | None = None) -> dict:
    """Match onnxruntime's detections of one image to PyTorch's and measure their differences.

    Detections with score >= ``score_threshold`` are matched one to one, in PyTorch's score order,
    to the unmatched detection of the same label with the highest box IoU (> 0.5). A detection
    within ``margin`` of the threshold may go unmatched (its score can cross it either way), and
    so may one within ``margin`` of the lowest score of a list cut at ``max_detections`` (the
    model's ``box_detections_per_img``: which one makes the cut can differ).

    Args:
        ref, got: ``boxes`` (N, 4), ``labels`` (N,), ``scores`` (N,), optionally ``masks``
            (N, 1, H, W) probabilities and ``keypoints`` (N, K, 3), as numpy arrays.

    Returns:
        ``{"detections": matched count, "unmatched_ref": PyTorch detections without a partner,
        "unmatched_got": onnxruntime detections without one, "box_diff": largest |coordinate
        difference| in pixels, "score_diff": largest |score difference|, "mask_iou": smallest
        IoU of the matched masks (1.0 when none), "mask_iou_decided": the same without the
        pixels at 0.5 +- 1e-3 (:func:`mask_ious`), "mask_diff": largest |mask probability
        difference|, "keypoint_diff": largest keypoint x/y
        difference (0.0 when none)}``.
    """
    cut = score_threshold
    for d in (ref, got):
        if max_detections is not None and len(d["scores"]) >= max_detections:
            cut = max(cut, float(d["scores"].min()))

    def keep(d):
        return np.flatnonzero(d["scores"] >= cut - margin)

    ri, gi = keep(ref), keep(got)
    iou = box_iou(torch.as_tensor(ref["boxes"][ri]).reshape(-1, 4),
                  torch.as_tensor(got["boxes"][gi]).reshape(-1, 4)).numpy()
    used = np.zeros(len(gi), bool)
    out = {"detections": 0, "unmatched_ref": 0, "unmatched_got": 0, "box_diff": 0.0, "score_diff": 0.0,
           "mask_iou": 1.0, "mask_iou_decided": 1.0, "mask_diff": 0.0, "keypoint_diff": 0.0}
    for a, i in enumerate(ri):
        cand = np.flatnonzero((got["labels"][gi] == ref["labels"][i]) & ~used & (iou[a] > 0.5))
        if len(cand) == 0:
            out["unmatched_ref"] += int(ref["scores"][i] >= cut + margin)
            continue
        b = cand[np.argmax(iou[a, cand])]
        used[b] = True
        j = gi[b]
        out["detections"] += 1
        out["box_diff"] = max(out["box_diff"], float(np.abs(ref["boxes"][i] - got["boxes"][j]).max()))
        out["score_diff"] = max(out["score_diff"], float(abs(ref["scores"][i] - got["scores"][j])))
        if "masks" in ref:
            plain, decided = mask_ious(ref["masks"][i], got["masks"][j])
            out["mask_iou"] = min(out["mask_iou"], plain)
            out["mask_iou_decided"] = min(out["mask_iou_decided"], decided)
            out["mask_diff"] = max(out["mask_diff"], float(np.abs(ref["masks"][i] - got["masks"][j]).max()))
        if "keypoints" in ref:
            out["keypoint_diff"] = max(out["keypoint_diff"], float(
                np.abs(ref["keypoints"][i, :, :2] - got["keypoints"][j, :, :2]).max()))
    out["unmatched_got"] = int(sum(got["scores"][gi[b]] >= cut + margin
                                   for b in np.flatnonzero(~used)))
    return out


def detections_to_numpy(det: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """One image's detections (torchvision's dict of tensors, any device and float dtype) as
    numpy arrays, floats in float32: the input of :func:`compare_detections`."""
    return {k: (v.float() if v.is_floating_point() else v).cpu().numpy() for k, v in det.items()}


def run_onnx(session, image: Tensor | np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """One image (3, H, W) float 0..1 through an exported detector: its outputs by name."""
    x = image.detach().cpu().float().numpy() if isinstance(image, Tensor) else np.asarray(image, np.float32)
    return dict(zip(names, session.run(list(names), {"image": np.ascontiguousarray(x)})))


def verify_detection(model: nn.Module, path: str | os.PathLike, images: Sequence[Tensor], *,
                     score_threshold: float = 0.5, box_tol: float = 0.5, min_mask_iou: float = 0.99,
                     keypoint_tol: float = 0.5, names: Sequence[str] | None = None) -> list[dict]:
    """Run the exported graph with onnxruntime on each image and compare with ``model([image])``.

    Returns:
        per image ``{"size": (H, W), "torch_detections": count >= score_threshold,
        "onnx_detections": count, "seconds_torch", "seconds_onnx", **compare_detections(...)}``.

    Raises:
        ExportError: an output of the wrong shape or dtype (an image without detections must give
            empty (0, ...) outputs), unmatched detections, a box or keypoint difference above its
            tolerance or a mask IoU (``mask_iou_decided``, see :func:`mask_ious`) below
            ``min_mask_iou``; the message starts with the largest violation and its image size.
    """
    require_module("onnxruntime")
    model = model.eval()
    names = tuple(names) if names is not None else output_names(model)
    session = onnxruntime_session(path)
    rows = []
    for image in images:
        h, w = image.shape[-2:]
        t0 = time.perf_counter()
        with torch.no_grad():
            ref = {k: v.numpy() for k, v in model([image])[0].items() if k in names}
        t1 = time.perf_counter()
        got = run_onnx(session, image, names)
        t2 = time.perf_counter()
        for k in names:
            r, g = ref[k], got[k]
            if g.ndim != r.ndim or g.shape[1:] != r.shape[1:] or g.dtype != r.dtype:
                raise ExportError(f"{path}: at {h}x{w} onnxruntime's {k} is {g.dtype}{list(g.shape)}, "
                                  f"PyTorch's {r.dtype}{list(r.shape)}")
        row = {"size": (int(h), int(w)),
               "torch_detections": int((ref["scores"] >= score_threshold).sum()),
               "onnx_detections": int((got["scores"] >= score_threshold).sum()),
               "seconds_torch": t1 - t0, "seconds_onnx": t2 - t1,
               **compare_detections(ref, got, score_threshold=score_threshold,
                                    max_detections=getattr(model.roi_heads, "detections_per_img", None))}
        rows.append(row)
    problems = []
    for r in rows:
        where = f"{r['size'][0]}x{r['size'][1]}"
        if r["unmatched_ref"] or r["unmatched_got"]:
            problems.append((float("inf"), f"at {where} {r['unmatched_ref']} PyTorch and {r['unmatched_got']} "
                                           f"onnxruntime detections (score >= {score_threshold}) have no match"))
        if r["box_diff"] > box_tol:
            problems.append((r["box_diff"] / box_tol, f"box difference {r['box_diff']:.3g} px (> {box_tol}) at {where}"))
        if r["mask_iou_decided"] < min_mask_iou:
            problems.append(((1 - r["mask_iou_decided"]) / max(1 - min_mask_iou, 1e-9),
                             f"mask IoU {r['mask_iou_decided']:.4f} (< {min_mask_iou}; "
                             f"{r['mask_iou']:.4f} with the pixels at 0.5) at {where}"))
        if r["keypoint_diff"] > keypoint_tol:
            problems.append((r["keypoint_diff"] / keypoint_tol,
                             f"keypoint difference {r['keypoint_diff']:.3g} px (> {keypoint_tol}) at {where}"))
    if problems:
        problems.sort(key=lambda p: -p[0])
        raise ExportError(f"{path}: onnxruntime detections differ from PyTorch: largest: {problems[0][1]}"
                          + "".join(f"; {p[1]}" for p in problems[1:4]))
    return rows


def export_detection(model: nn.Module, path: str | os.PathLike, size: tuple[int, int] | None = None, *,
                     opset: int = 18, verify: bool = True, sizes: Sequence[tuple[int, int]] | None = None,
                     images: Sequence[Tensor] | None = None, score_threshold: float = 0.5,
                     box_tol: float = 0.5, min_mask_iou: float = 0.99) -> dict:
    """Export an instance model to ONNX for one image of any size (see the module docstring) and
    verify it with onnxruntime.

    Args:
        model: segzoo Mask R-CNN / Keypoint R-CNN (torchvision's detection contract); put in eval mode.
        path: output ``.onnx`` file (parent folders created).
        size: (H, W) of the image traced (default: the model's ``min_size`` x 4/3 of it); the graph
            takes any other size.
        opset: ONNX opset (>= 16 for RoIAlign's coordinate mode).
        verify: compare onnxruntime with PyTorch on ``images`` (default: :func:`example_image`\\ s
            at ``sizes``, default :data:`DETECTION_VERIFY_SIZES`).
        score_threshold, box_tol, min_mask_iou: see :func:`verify_detection`.

    Returns:
        ``{"path", "min_size": 1, "outputs": names, "sizes": [(H, W), ...], "diffs": [largest box
        difference per image], "rows": verify_detection's rows, "max_abs_diff": largest box
        difference or None, "description": the graph's input and outputs in words, "check": the
        verification in words}`` (no sizes, diffs or rows when not verified).

    Raises:
        ExportError: see :func:`export_program` and :func:`verify_detection`.
    """
    model = model.eval()
    if size is None:
        side = int(model.transform.min_size[-1])
        size = (side, side * 4 // 3)
    path, names = export_program(model, path, size, opset=opset)
    described = ", ".join(f"{n} {OUTPUT_SHAPES[n]}" for n in names)
    result = {"path": path, "min_size": 1, "outputs": names, "sizes": [], "diffs": [], "rows": [],
              "max_abs_diff": None, "check": "not verified",
              "description": f"input image 3 x H x W float32 RGB in 0..1, any H, W; outputs {described}"}
    if not verify:
        return result
    if images is None:
        images = [example_image(h, w, seed=i + 1) for i, (h, w) in enumerate(sizes or DETECTION_VERIFY_SIZES)]
    rows = verify_detection(model, path, images, score_threshold=score_threshold, box_tol=box_tol,
                            min_mask_iou=min_mask_iou, names=names)
    diffs = [r["box_diff"] for r in rows]
    check = "onnxruntime matches PyTorch at " + ", ".join(
        f"{r['size'][0]}x{r['size'][1]} ({r['detections']} detections >= {score_threshold}, box diff "
        f"{r['box_diff']:.1e} px, mask IoU >= {r['mask_iou']:.4f})" for r in rows)
    return {**result, "sizes": [r["size"] for r in rows], "diffs": diffs, "rows": rows,
            "max_abs_diff": max(diffs) if diffs else None, "check": check}
