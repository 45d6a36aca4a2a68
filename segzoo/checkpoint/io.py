"""Checkpoints written atomically: a crash mid-save never leaves a truncated file behind.

Layout of a training checkpoint (a dict saved with ``torch.save``)::

    {"model": state_dict (the trained weights, never a DDP/compile wrapper's),
     "ema": {"module": state_dict, "updates": int} or None,
     "optimizer", "scheduler", "scaler": state dicts,
     "iteration": int (optimizer steps done), "samples_seen": int (training stream position),
     "rng": [per-rank {"python", "numpy", "torch", "cuda"?}], "world_size": int,
     "best": {metric: value, "iteration": int}, "config": resolved config dict,
     "meta": {"num_classes", "class_names", "palette", "task", "model"}, "version": 2}

A run folder's ``checkpoints/`` holds ``last.pt`` (every checkpoint), ``best.pt`` (best
evaluation) and, with ``train.keep_last: N``, the N newest ``iter_XXXXXX.pt`` snapshots (hard links
to the ``last.pt`` of that iteration, so they cost no extra disk write).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from segzoo.errors import CheckpointError, NonFiniteError

__all__ = ["CheckpointError", "check_finite", "load_checkpoint", "save_checkpoint", "snapshot",
           "describe_checkpoint"]


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save ``state`` to ``path`` atomically (temp file in the same folder, fsync, rename).

    Raises:
        CheckpointError: the file could not be written (disk full, quota, permissions). The
            message names the path and the free space on its disk; the temp file is removed and
            an older ``path`` is left as it was, so the run can resume from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointError(_write_failed(path, exc)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_failed(path: Path, exc: BaseException) -> str:
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**30:.1f} GiB free there"
    except OSError:
        free = "free space unknown"
    kept = (f"the previous {path.name} is unchanged" if path.is_file()
            else f"no earlier {path.name} exists")
    return (f"could not write checkpoint {path} ({free}): {str(exc).strip()}; {kept}. Free "
            "disk space (or choose another work_dir) and rerun the same command to resume")


def describe_checkpoint(path: Path) -> str:
    """What exists on disk to resume from: ``"the last checkpoint is <path> (iteration N)"``, or
    that none has been written yet."""
    if not path.is_file():
        return (f"no checkpoint has been written yet ({path} does not exist; set "
                "train.checkpoint_interval to save more often)")
    try:
        iteration = torch.load(path, map_location="cpu", weights_only=False).get("iteration")
    except Exception:  # unreadable: still name it
        iteration = None
    return f"the last checkpoint is {path}" + (f" (iteration {iteration})" if iteration is not None else "")


def check_finite(weights: dict[str, torch.Tensor], when: str, last_good: Path) -> None:
    """Raise :class:`~segzoo.errors.NonFiniteError` naming the first non-finite entries of
    ``weights`` (checked before saving, so a checkpoint never holds NaN or inf weights), and what
    checkpoint ``last_good`` exists."""
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise NonFiniteError(
            f"non-finite weights {when} ({', '.join(bad[:5])}); not saved; "
            f"{describe_checkpoint(last_good)}; lower the learning rate or set train.clip_grad_norm")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (or a bare state dict, returned as
    ``{"model": state_dict}``).

    Raises:
        CheckpointError: missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if isinstance(state, dict) and "model" not in state and all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        state = {"model": state}
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} holds no model weights (expected a 'model' entry)")
    return state


SNAPSHOT = re.compile(r"^iter_(\d+)\.pt$")


def snapshot(last: Path, iteration: int, keep: int) -> Path | None:
    """Keep ``last`` as ``iter_<iteration>.pt`` next to it and delete all but the ``keep`` newest
    snapshots (``keep`` 0: none). A hard link where the file system allows, else a copy (written
    atomically)."""
    if keep <= 0:
        return None
    folder = last.parent
    target = folder / f"iter_{iteration:06d}.pt"
    if target.exists():
        target.unlink()
    try:
        os.link(last, target)
    except OSError:
        tmp = folder / f".{target.name}.tmp"
        shutil.copyfile(last, tmp)
        os.replace(tmp, target)
    snaps = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := SNAPSHOT.match(p.name)))
    for _, old in snaps[:-keep]:
        old.unlink(missing_ok=True)
    return target
