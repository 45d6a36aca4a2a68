"""Semantic evaluation over a loader with a streaming confusion matrix, summed across ranks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from segzoo.engine import distributed
from segzoo.inference.evaluate import evaluate


@torch.inference_mode()
def predict_labels(model: nn.Module, images: Tensor) -> Tensor:
    """Eval-mode forward and argmax: images (B, 3, H, W) -> labels (B, H, W) int64."""
    return model(images).argmax(1)


@torch.inference_mode()
def evaluate_semantic(
    model: nn.Module,
    loader: DataLoader,
    *,
    num_classes: int,
    ignore_index: int,
    class_names: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    desc: str = "eval",
    eval_cfg=None,
) -> dict:
    """Score ``model`` on every batch of ``loader`` (mode restored afterwards).

    The forward pass runs through :class:`segzoo.inference.modes.SemanticInferencer` set up by
    ``eval_cfg`` (``cfg.eval``: whole/slide, TTA); metrics are taken at the original label size
    when the val pipeline resizes (``eval.original_size``). For both rows (semantic and instance)
    set ``eval.cross_task`` (see :func:`segzoo.inference.evaluate.evaluate`).

    Under torch.distributed each rank passes its own share of the data (a shard, no sample
    twice); the confusion matrices, boundary counts and image counts are summed across ranks and
    instance predictions gathered, so every rank returns the metrics of the whole split, equal to a
    single process's.

    Returns the metrics of :func:`segzoo.metrics.metrics_from_confusion` (plus boundary IoU
    ``mBIoU``/``bIoU`` unless ``eval.boundary_iou`` is false), ``"num_images"`` and ``"task"``.
    """
    # one scoring loop (inference modes, original-size scoring, boundary IoU, cross-task)
    dist = distributed.info().is_distributed
    return evaluate(model, loader, num_classes=num_classes, ignore_index=ignore_index,
                    class_names=class_names, eval_cfg=eval_cfg, device=device, progress=progress,
                    desc=desc, reduce=(lambda c: _reduce_counts(c, device)) if dist else None,
                    gather=distributed.all_gather_object if dist else None)


def _reduce_counts(counts: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Sum int64 counts over ranks (on the device NCCL needs, on the CPU for gloo)."""
    if not distributed.info().is_distributed:
        return counts
    return distributed.all_reduce_sum(counts.to(device)).to(counts.device)


def format_metrics(metrics: dict) -> str:
    """A table of per-class IoU/accuracy followed by the summary (values in percent)."""
    names = list(metrics["IoU"])
    width = max(8, *(len(n) for n in names))
    cols = [k for k in ("IoU", "acc", "dice", "bIoU") if k in metrics]
    lines = [f"{'class':<{width}}  " + "  ".join(f"{k:>6}" for k in cols)]
    for name in names:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{_pct(metrics[k][name]):>6}" for k in cols))
    lines.append(
        f"mIoU {_pct(metrics['mIoU'])}  mean_acc {_pct(metrics['mean_acc'])}  "
        f"pixel_acc {_pct(metrics['pixel_acc'])}  ({metrics.get('num_images', '?')} images)"
    )
    extra = [(k, metrics[k]) for k in ("fwIoU", "mDice", "mBIoU") if k in metrics]
    if extra:
        lines.append("  ".join(f"{k} {_pct(v)}" for k, v in extra))
    if "mask_AP" in metrics or "bbox_AP" in metrics:  # the instance row (cross-task / instance models)
        from segzoo.metrics.instance import format_instance_metrics

        lines.append(format_instance_metrics(metrics))
    return "\n".join(lines)


def _pct(x: float) -> str:
    return "nan" if x != x else f"{100 * x:.2f}"
