"""Checkpoints written atomically: a crash mid-save never leaves a truncated file behind.

Layout of a training checkpoint (a dict saved with ``torch.save``)::

    {"model": state_dict, "optimizer": ..., "scheduler": ..., "iteration": int,
     "config": resolved config dict, "meta": {"num_classes", "class_names", "palette",
     "task"}, "rng": {...}, "best": {...}}
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from segzoo.errors import SegzooError


class CheckpointError(SegzooError, ValueError):
    """A checkpoint file is missing or unreadable."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save ``state`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
