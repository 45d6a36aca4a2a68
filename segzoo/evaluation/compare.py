"""``segzoo compare``: the semantic-vs-instance table of trained runs, both rows for every model.

Each run folder (``config.yaml`` + ``checkpoints/last.pt``, as ``segzoo train`` leaves it) is scored
on its config's val split by :func:`~segzoo.evaluation.checkpoint_eval.evaluate_checkpoint` with
``cross_task``: a semantic model gets its semantic metrics and the COCO AP of its connected
components; an instance model (``model.task == "instance"``) its COCO AP and the semantic metrics
of its pasted masks. The val dataset is asked to return instances (``with_instances`` /
``instances`` keyword) when it can. The table is :func:`segzoo.evaluation.tables.format_table`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from segzoo.config import load_config
from segzoo.errors import SegzooError
from segzoo.evaluation.checkpoint_eval import evaluate_checkpoint


def evaluate_run(run: str | os.PathLike, *, checkpoint: str = "last.pt", overrides: Sequence[str] = (),
                 device: str | None = None, progress: bool = False) -> dict:
    """Both rows of one run folder (see the module docstring); adds ``run`` and ``model`` to the
    metrics of :func:`evaluate_checkpoint`.

    Raises:
        SegzooError: ``run`` is not a run folder, or its config has no val split.
    """
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise SegzooError(f"{run} is not a run folder (no config.yaml); pass folders written by segzoo train")
    cfg = load_config(run / "config.yaml", overrides)
    metrics = evaluate_checkpoint(cfg, run / "checkpoints" / checkpoint, device=device, cross_task=True,
                                  progress=progress)
    metrics.update(run=str(run), model=cfg.model.name)
    return metrics
