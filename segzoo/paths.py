"""Locating the real datasets (the shared ``data/`` folder) in one place.

Resolution order for :func:`data_root`: the ``SEGZOO_DATA`` environment variable, then
``../shared/data`` next to the repository (the development layout), then ``../shared/data``
relative to the working directory. Tests and configs reach real data only through here.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "SEGZOO_DATA"
_REPO = Path(__file__).resolve().parents[2]


def data_root() -> Path | None:
    """The shared data folder, or ``None`` if none of the known places exists."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    for cand in (_REPO.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if cand.is_dir():
            return cand
    return None


def resolve_data_path(path: str | os.PathLike) -> Path:
    """Resolve a dataset ``root`` from a config.

    Absolute paths and paths that exist relative to the working directory are used as they are;
    other relative paths are looked up under :func:`data_root` (so ``root: camvid`` finds
    ``../shared/data/camvid``). A path found nowhere is returned unchanged, for the dataset to
    report as missing.
    """
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    root = data_root()
    if root is not None and (root / p).exists():
        return root / p
    return p
