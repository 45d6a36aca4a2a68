"""Semantic evaluation over a loader with a streaming confusion matrix, summed across ranks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from segzoo.engine import distributed
from segzoo.metrics import ConfusionMatrix


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
) -> dict:
    """Score ``model`` on every batch of ``loader`` (mode restored afterwards).

    Under torch.distributed each rank passes its own share of the data (a shard, no sample
    twice); the confusion matrices and image counts are summed across ranks, so every rank returns
    the metrics of the whole split, equal to a single process's.

    Returns the metrics of :func:`segzoo.metrics.metrics_from_confusion` plus
    ``"num_images"``.
    """
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index, device=device)
    n = 0
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        images = batch["image"].to(device, non_blocking=True)
        cm.update(predict_labels(model, images), batch["mask"].to(device, non_blocking=True))
        n += images.shape[0]
    model.train(was_training)
    counts = torch.cat([cm.matrix.reshape(-1), torch.tensor([n], device=cm.matrix.device)])
    counts = _reduce_counts(counts, device)
    cm.matrix.copy_(counts[:-1].view_as(cm.matrix))
    metrics = cm.compute(class_names)
    metrics["num_images"] = int(counts[-1])
    return metrics


def _reduce_counts(counts: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Sum int64 counts over ranks (on the device NCCL needs, on the CPU for gloo)."""
    if not distributed.info().is_distributed:
        return counts
    return distributed.all_reduce_sum(counts.to(device)).to(counts.device)


def format_metrics(metrics: dict) -> str:
    """A table of per-class IoU/accuracy followed by the summary (values in percent)."""
    names = list(metrics["IoU"])
    width = max(8, *(len(n) for n in names))
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'acc':>6}"]
    for name in names:
        iou, acc = metrics["IoU"][name], metrics["acc"][name]
        lines.append(f"{name:<{width}}  {_pct(iou):>6}  {_pct(acc):>6}")
    lines.append(
        f"mIoU {_pct(metrics['mIoU'])}  mean_acc {_pct(metrics['mean_acc'])}  "
        f"pixel_acc {_pct(metrics['pixel_acc'])}  ({metrics.get('num_images', '?')} images)"
    )
    return "\n".join(lines)


def _pct(x: float) -> str:
    return "nan" if x != x else f"{100 * x:.2f}"
