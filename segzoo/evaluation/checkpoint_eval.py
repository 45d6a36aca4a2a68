"""The one evaluation sequence: a trained checkpoint scored on its config's val split.

``segzoo eval``, ``segzoo compare`` and the trainer's periodic evaluation all call
:func:`evaluate_checkpoint`; from Python::

    from segzoo.config import load_config
    from segzoo.evaluation import evaluate_checkpoint, format_metrics

    cfg = load_config("work_dirs/run/config.yaml")
    metrics = evaluate_checkpoint(cfg, "work_dirs/run/checkpoints/best.pt")
    print(format_metrics(metrics))
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from segzoo import builders
from segzoo.checkpoint import load_trained_model
from segzoo.checkpoint.compat import check_num_classes
from segzoo.config import Config
from segzoo.data import SegDataset
from segzoo.errors import SegzooError
from segzoo.evaluation.evaluator import evaluate


def wants_cross_task(cfg: Config, cross_task: bool | None = None) -> bool:
    """Whether both rows (semantic and instance) are scored: ``cross_task`` if given, else
    ``eval.cross_task`` of the config."""
    return bool(cfg.eval.cross_task) if cross_task is None else bool(cross_task)


def val_dataset(cfg: Config, cross_task: bool | None = None) -> SegDataset:
    """The config's val dataset with its pipeline; asked for instance targets too when both rows
    are scored and its builder has such a switch (``with_instances`` / ``instances``).

    Raises:
        SegzooError: the config has no ``data.val`` split.
    """
    if cfg.data.val is None:
        raise SegzooError("the config has no data.val split to evaluate on; add one (data.val.dataset)")
    options = builders.instance_target_options(cfg.data.val) if wants_cross_task(cfg, cross_task) else {}
    return builders.dataset_from_split(cfg, cfg.data.val, **options)


def evaluate_checkpoint(cfg: Config, checkpoint: str | os.PathLike, *, device: torch.device | str | None = None,
                        cross_task: bool | None = None, results_path: str | os.PathLike | None = None,
                        progress: bool = True, model: nn.Module | None = None,
                        loader: DataLoader | None = None, sharded: bool = False) -> dict:
    """Score ``checkpoint`` on ``cfg``'s val split with ``cfg.eval``'s inference settings.

    Args:
        cfg: the run's config (its model, ``data.val`` and ``eval`` sections are used).
        checkpoint: the checkpoint file (``checkpoints/last.pt`` of a run, a ``best.pt``, or a bare
            state dict); its EMA weights are scored when it has them.
        device: where to run (default ``train.device``; ``"auto"``: CUDA if available).
        cross_task: score both rows (default ``eval.cross_task``); see
            :func:`segzoo.evaluation.evaluator.evaluate`.
        results_path: where the instance row's COCO results json goes (if there is one).
        model, loader: already-built ones to use instead of loading ``checkpoint`` and building the
            val loader: the trainer passes the weights it has just saved to ``checkpoint`` and its
            own val loader.
        sharded: ``loader`` holds this process's share of the val split under torch.distributed
            (the trainer's); the metrics are then reduced across processes.

    Returns:
        the metrics of :func:`~segzoo.evaluation.evaluator.evaluate`, plus, when the checkpoint
        was loaded here, ``"iteration"`` (optimizer steps of the run, 0 for a bare state dict)
        and, when ``cfg`` builds it at another ``output_stride`` / ``atrous_rates`` than trained,
        ``"inference_changes"`` (``["model.output_stride: 16 -> 8", ...]``).

    Raises:
        SegzooError: no val split. CheckpointError: the checkpoint is unreadable, was trained as
            another model or for another number of classes than the val dataset has (said before
            evaluating). DataError / ConfigError: bad val data or ``eval`` settings, naming them.
    """
    device = builders.resolve_device(str(device or cfg.train.device))
    cross_task = wants_cross_task(cfg, cross_task)  # decided once: the dataset and the scoring agree
    meta: dict = {}
    if model is None:
        model, meta = load_trained_model(cfg, checkpoint, device)
    if loader is None:
        dataset = val_dataset(cfg, cross_task)
        check_num_classes(meta, dataset.num_classes, checkpoint, "the config's val dataset")
        loader = builders.loader_from_split(cfg, cfg.data.val, dataset, train=False)
    dataset = loader.dataset
    while isinstance(dataset, Subset):  # a distributed shard of the val set
        dataset = dataset.dataset
    metrics = evaluate(model, loader, num_classes=dataset.num_classes, ignore_index=cfg.data.ignore_index,
                       class_names=dataset.class_names, eval_cfg=cfg.eval, cross_task=cross_task,
                       device=device, progress=progress,
                       results_path=Path(results_path) if results_path is not None else None, sharded=sharded)
    if "iteration" in meta:
        metrics["iteration"] = meta["iteration"]
    if meta.get("inference_changes"):  # e.g. evaluated at output_stride 8, trained at 16
        metrics["inference_changes"] = meta["inference_changes"]
    return metrics
