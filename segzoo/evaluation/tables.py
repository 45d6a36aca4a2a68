"""The metric tables printed and logged by ``segzoo eval``, ``segzoo compare`` and training: one
place for the semantic table, the COCO lines and the multi-run comparison, all in percent."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from segzoo.metrics.instance import IOU_TYPES, KP_STAT_NAMES, STAT_NAMES

# (metric key, column header) of ``segzoo compare``'s table
SEMANTIC_COLUMNS = (("mIoU", "mIoU"), ("mDice", "mDice"), ("mBIoU", "mBIoU"), ("pixel_acc", "aAcc"))
INSTANCE_COLUMNS = (("mask_AP", "mask AP"), ("mask_AP50", "mask AP50"), ("mask_AP75", "mask AP75"),
                    ("bbox_AP", "box AP"))
KEYPOINT_COLUMNS = (("kp_AP", "kp AP"), ("kp_AP50", "kp AP50"), ("kp_AP75", "kp AP75"))


def pct(x: Any, digits: int = 2, missing: str = "n/a", nan: str = "nan") -> str:
    """A fraction in [0, 1] as percent with ``digits`` decimals; ``missing`` for None, ``nan`` for NaN."""
    if x is None:
        return missing
    x = float(x)
    return nan if math.isnan(x) else f"{100 * x:.{digits}f}"


def format_instance_metrics(metrics: Mapping[str, Any]) -> str:
    """One line per COCO iou type present (bbox, segm, keypoints): AP, AP50, AP75, APs, APm, APl
    in percent (keypoints: no APs)."""
    lines = []
    for prefix in IOU_TYPES.values():
        if f"{prefix}_AP" in metrics:
            names = KP_STAT_NAMES if prefix == "kp" else STAT_NAMES
            vals = "  ".join(f"{n} {pct(metrics[f'{prefix}_{n}'])}" for n in names)
            lines.append(f"{prefix:<5} {vals}  ({metrics.get('num_images', '?')} images)")
    return "\n".join(lines)


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """The evaluation table: per-class IoU / accuracy / Dice / boundary IoU, the semantic summary,
    and the COCO lines when the metrics have an instance row (values in percent)."""
    names = list(metrics["IoU"])
    width = max(8, *(len(n) for n in names))
    cols = [k for k in ("IoU", "acc", "dice", "bIoU") if k in metrics]
    lines = [f"{'class':<{width}}  " + "  ".join(f"{k:>6}" for k in cols)]
    for name in names:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{pct(metrics[k][name]):>6}" for k in cols))
    lines.append(
        f"mIoU {pct(metrics['mIoU'])}  mean_acc {pct(metrics['mean_acc'])}  "
        f"pixel_acc {pct(metrics['pixel_acc'])}  ({metrics.get('num_images', '?')} images)"
    )
    extra = [(k, metrics[k]) for k in ("fwIoU", "mDice", "mBIoU") if k in metrics]
    if extra:
        lines.append("  ".join(f"{k} {pct(v)}" for k, v in extra))
    if any(f"{p}_AP" in metrics for p in IOU_TYPES.values()):  # the instance row
        lines.append(format_instance_metrics(metrics))
    return "\n".join(lines)


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """``segzoo compare``'s markdown table: one line per run with its semantic and instance metrics
    (percent, one decimal; keypoint AP columns when a run has them) and which of the two rows is
    derived rather than the model's own output."""
    columns = [*SEMANTIC_COLUMNS, *INSTANCE_COLUMNS]
    if any("kp_AP" in r for r in rows):
        columns += KEYPOINT_COLUMNS
    head = ["model", "task", "iters", *(h for _, h in columns), "derived row"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.get("task") == "semantic":
            derived = "instance: connected components"
        else:  # a keypoint model without a mask branch pastes its boxes
            derived = "semantic: pasted boxes" if r.get("mask_AP") is None and "kp_AP" in r else "semantic: pasted masks"
        cells = [str(r.get("model", "?")), str(r.get("task", "?")), str(r.get("iteration", "")),
                 *(pct(r.get(k), 1, nan="n/a") for k, _ in columns), derived]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
