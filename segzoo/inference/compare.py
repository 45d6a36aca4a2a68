"""``segzoo compare``: the semantic-vs-instance table of trained runs, both rows for every model.

Each run folder (``config.yaml`` + ``checkpoints/last.pt``, as ``segzoo train`` leaves it) is scored
on its config's val split with :func:`segzoo.inference.evaluate.evaluate` and ``cross_task``: a
semantic model gets its semantic metrics and the COCO AP of its connected components; an instance
model (``model.task == "instance"``) its COCO AP and the semantic metrics of its pasted masks. The
val dataset is switched to return instances (``with_instances`` / ``instances`` keyword) when it can.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Sequence
from pathlib import Path

from segzoo.errors import SegzooError

SEMANTIC_COLUMNS = (("mIoU", "mIoU"), ("mDice", "mDice"), ("mBIoU", "mBIoU"), ("pixel_acc", "aAcc"))
INSTANCE_COLUMNS = (("mask_AP", "mask AP"), ("mask_AP50", "mask AP50"), ("mask_AP75", "mask AP75"),
                    ("bbox_AP", "box AP"))


def enable_instances(cfg) -> None:
    """Ask the val dataset for instance targets if its builder has such a switch."""
    from segzoo.registry import DATASETS

    comp = cfg.data.val.dataset
    params = inspect.signature(DATASETS.get(comp.name)).parameters
    for key in ("with_instances", "instances"):
        if key in params:
            comp.kwargs.setdefault(key, True)
            return


def evaluate_run(run: str | os.PathLike, *, checkpoint: str = "last.pt", overrides: Sequence[str] = (),
                 device: str | None = None, progress: bool = False) -> dict:
    """Both rows of one run folder (see the module docstring); adds ``run``, ``model``, ``iteration``."""
    from segzoo.config import load_config
    from segzoo.engine import builder
    from segzoo.engine.checkpoint import load_checkpoint
    from segzoo.inference import load_trained_model
    from segzoo.inference.evaluate import evaluate

    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise SegzooError(f"{run} is not a run folder (no config.yaml)")
    cfg = load_config(run / "config.yaml", overrides)
    if cfg.data.val is None:
        raise SegzooError(f"{run}: the config has no data.val split")
    enable_instances(cfg)
    dev = builder.resolve_device(device or cfg.train.device)
    ckpt = run / "checkpoints" / checkpoint
    model, meta = load_trained_model(cfg, ckpt, dev)
    dataset = builder.dataset_from_split(cfg, cfg.data.val)
    loader = builder.loader_from_split(cfg, cfg.data.val, dataset, train=False)
    metrics = evaluate(model, loader, num_classes=meta["num_classes"], ignore_index=cfg.data.ignore_index,
                       class_names=dataset.class_names, eval_cfg=cfg.eval, cross_task=True, device=dev,
                       progress=progress)
    metrics.update(run=str(run), model=cfg.model.name, iteration=int(load_checkpoint(ckpt).get("iteration", 0)))
    return metrics


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def format_table(rows: Sequence[dict]) -> str:
    """A markdown table: one line per model with its semantic and instance metrics (percent), and
    which of the two rows is the model's own output."""
    head = ["model", "task", "iters", *(h for _, h in SEMANTIC_COLUMNS), *(h for _, h in INSTANCE_COLUMNS),
            "derived row"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        derived = ("instance: connected components" if r.get("task") == "semantic"
                   else "semantic: pasted masks")
        cells = [r.get("model", "?"), r.get("task", "?"), str(r.get("iteration", "")),
                 *(_pct(r.get(k)) for k, _ in SEMANTIC_COLUMNS), *(_pct(r.get(k)) for k, _ in INSTANCE_COLUMNS),
                 derived]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
