"""Cached training runs for the accuracy benchmarks (``benchmarks/ablations.py``,
``benchmarks/semantic_vs_instance.py``).

A :class:`TrainSpec` is a config file plus ``--set`` overrides. :func:`train_cached` trains it
through the normal engine (:class:`segzoo.engine.Trainer`) in
``<work_root>/<model>-<fingerprint>/`` and records the result in a JSON cache keyed by ``key``;
the fingerprint is a hash of the resolved config less its ``eval`` section (evaluation settings do
not change what is trained), so a finished run is never trained again while its config is unchanged (two benchmarks asking for the same config share one run folder), a
changed config trains anew in a new folder, and an interrupted run resumes from its last
checkpoint (the engine's exact resume).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from segzoo.bench.machine import cpu_model, load_average


@dataclass(frozen=True)
class TrainSpec:
    """One training run: ``key`` (unique in its cache, e.g. ``"fcn_skips/fcn8s/seed0"``),
    ``config`` (a YAML path) and ``overrides`` (``key=value`` strings, as ``--set``)."""

    key: str
    config: str
    overrides: tuple[str, ...] = field(default_factory=tuple)


def common_schedule(dataset: str, iters: int, size: int, seed: int) -> list[str]:
    """Overrides giving every benchmark run one schedule: ``iters`` iterations of the config's
    optimizer and poly schedule (warm-up 10%, at most 20 iterations), one evaluation at the end,
    checkpoints every third of the run (so an interrupted run resumes); on the built-in shapes
    data the images are ``size`` x ``size``."""
    out = [f"train.max_iters={iters}", f"train.seed={seed}", f"train.log_interval={max(1, iters // 10)}",
           "train.eval_interval=0", f"train.checkpoint_interval={max(1, iters // 3)}",
           f"scheduler.warmup_iters={min(20, max(0, iters // 10))}", "train.num_vis=2"]
    if dataset == "shapes":
        out += [f"data.train.dataset.size=[{size},{size}]", f"data.val.dataset.size=[{size},{size}]"]
    return out


RECORD = "bench_run.json"  # in a run folder: this process's training seconds, whether it resumed


def load_cache(path: str | Path) -> dict:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {"runs": {}}


def save_cache(path: str | Path, cache: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
    tmp.replace(path)


def fingerprint(cfg_dict: dict) -> str:
    """A short hash of a resolved config less its ``eval`` section (what decides whether a cached
    run still stands: evaluation settings do not change the training)."""
    text = json.dumps({k: v for k, v in cfg_dict.items() if k != "eval"}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _slug(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key.replace("/", "__"))


def _counts(cfg, num_classes: int) -> dict:
    """Parameters and GFLOPs (one image at the training crop size) of the config's model; either
    is left out with a ``counts_error`` when it cannot be computed (informative only)."""
    import torch

    from segzoo.bench.flops import count_flops, count_params
    from segzoo.registry import MODELS

    out: dict = {}
    try:
        kwargs = {"num_classes": num_classes, **cfg.model.kwargs}
        with torch.device("meta"):
            model = MODELS.build(cfg.model.name, **kwargs)
        out["params"] = count_params(model)
        size = cfg.data.train.dataset.kwargs.get("size") if cfg.data.train else None
        size = tuple(size) if size else (64, 64)
        out.update(gflops=count_flops(model, size) / 1e9, flops_size=list(size))
    except Exception as exc:  # e.g. detection models cannot run on the meta device
        out["counts_error"] = f"{type(exc).__name__}: {exc}"
    return out


def train_cached(spec: TrainSpec, work_root: str | Path, cache_path: str | Path,
                 log: Callable[[str], None] = print, extra_overrides: Sequence[str] = ()) -> dict:
    """Train ``spec`` unless the cache holds it with the same fingerprint; returns its record:
    ``metrics`` (the final evaluation: ``mIoU``, ``pixel_acc``, ... or the instance metrics),
    ``params``, ``gflops``, ``train_seconds`` (wall time of the training process, kept in the
    run folder's ``bench_run.json`` for other benchmarks sharing the run; ``resumed`` says whether
    it continued an interrupted one, whose time is not included), ``work_dir``, ``fingerprint``,
    ``date``, machine.

    Raises what the engine raises (bad config, non-finite loss, ...)."""
    from segzoo.config import load_config
    from segzoo.engine import Trainer

    overrides = [*spec.overrides, *extra_overrides]
    cfg = load_config(spec.config, overrides)
    fp = fingerprint(cfg.to_dict())
    cache = load_cache(cache_path)
    rec = cache["runs"].get(spec.key)
    if rec and rec.get("fingerprint") == fp and "metrics" in rec:
        log(f"{spec.key}: cached ({rec['work_dir']})")
        return rec
    work_dir = Path(work_root) / f"{_slug(cfg.model.name)}-{fp}"  # equal configs share a run
    finished = work_dir / "metrics.json"
    resumed = (work_dir / "checkpoints" / "last.pt").exists()
    t0 = time.perf_counter()
    if finished.exists():  # trained before (by another benchmark, or the cache was lost): read it
        metrics = json.loads(finished.read_text())
        record = work_dir / RECORD
        past = json.loads(record.read_text()) if record.exists() else {}
        seconds, resumed = past.get("train_seconds"), past.get("resumed", resumed)
        log(f"{spec.key}: finished run found in {work_dir}")
    else:
        log(f"{spec.key}: training {spec.config} {' '.join(overrides)} -> {work_dir}")
        metrics = Trainer(cfg, work_dir, progress=False).train().metrics
        seconds = time.perf_counter() - t0
        (work_dir / RECORD).write_text(json.dumps({"train_seconds": seconds, "resumed": resumed}))
    rec = {"key": spec.key, "config": spec.config, "overrides": overrides, "fingerprint": fp,
           "work_dir": str(work_dir), "metrics": metrics, "train_seconds": seconds,
           "resumed": resumed, "iterations": cfg.train.max_iters, "model": cfg.model.name,
           "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "machine": {"cpu": cpu_model(), "load_average_end": load_average()},
           **_counts(cfg, len(metrics.get("IoU") or {}) or 2)}
    cache = load_cache(cache_path)  # re-read: another process may have added runs meanwhile
    cache["runs"][spec.key] = rec
    save_cache(cache_path, cache)
    return rec
