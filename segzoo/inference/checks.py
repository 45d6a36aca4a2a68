"""Checks of a model's input and output at inference time, shared by training, evaluation,
prediction and export: each raises an error that names the images and what to change."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from segzoo.errors import ConfigError, DataError, NonFiniteError


def check_finite_output(output: Tensor, what: str) -> None:
    """Raise :class:`~segzoo.errors.NonFiniteError` if ``output`` (logits, scores, boxes) holds
    NaN or inf: its argmax would silently score as class 0 everywhere."""
    if output.is_floating_point() and not bool(output.isfinite().all()):
        n = int((~output.isfinite()).sum())
        raise NonFiniteError(
            f"the model output {n} non-finite (NaN/inf) value(s) for {what}; check the checkpoint's "
            "weights and the input values (with train.amp fp16, overflow: try bf16 or fp32)")


def check_input_size(model: nn.Module, size: Sequence[int], what: str, *, slide: bool = False) -> None:
    """Raise :class:`DataError` if an input of ``size`` (H, W) is below the model's
    ``min_input_size`` (its coarsest feature map would be empty), saying the minimum and what to
    change. Models without ``min_input_size`` (detectors resize their input) pass.

    Args:
        slide: the image is predicted in sliding windows (``eval.mode: slide``), which cannot help.
    """
    model = getattr(model, "module", model)  # DDP / compile wrappers
    m = int(getattr(model, "min_input_size", 0) or 0)
    h, w = int(size[0]), int(size[1])
    if h >= m and w >= m:
        return
    name = getattr(model, "name", type(model).__name__)
    hint = ("" if slide else f", or predict it in windows: eval.mode: slide with eval.crop_size >= {m}")
    raise DataError(
        f"{what} is {h}x{w} pixels, below the {m}x{m} that {name} needs (its output stride); add a "
        f"resize transform to the split's transforms (e.g. {{name: resize, size: [{max(m, h)}, "
        f"{max(m, w)}]}}){hint}")


def image_names(metas: Sequence[dict]) -> str:
    """The first three images of a batch by path (else dataset index), for error messages."""
    paths = [str(m.get("image_path", m.get("index", "?"))) for m in metas]
    return ", ".join(paths[:3]) + (f" (+{len(paths) - 3} more)" if len(paths) > 3 else "")


def model_task(model: nn.Module) -> str:
    """``model.task`` (``"semantic"`` when the model does not say)."""
    task = getattr(model, "task", "semantic")
    if task not in ("semantic", "instance"):
        raise ValueError(f"model.task must be 'semantic' or 'instance', got {task!r}")
    return task


def check_input_normalization(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
    """Refuse to feed normalised images to a model that normalises them itself.

    Models with ``normalizes_input = True`` (segzoo's Mask R-CNN, like torchvision's detection
    models) take 0..1 images; their configs set ``data.mean: [0, 0, 0]`` and ``data.std: [1, 1, 1]``.

    Raises:
        ConfigError: other ``data.mean``/``data.std`` for such a model.
    """
    if not getattr(model, "normalizes_input", False):
        return
    if any(float(m) != 0.0 for m in mean) or any(float(s) != 1.0 for s in std):
        raise ConfigError(
            f"'data.mean'/'data.std' are {list(mean)}/{list(std)}, but {type(model).__name__} normalises its "
            "0..1 input images itself (torchvision's detection convention; model.image_mean/image_std); "
            "set data.mean: [0, 0, 0] and data.std: [1, 1, 1]")
