"""The run folder's records: plain-text log, metrics.jsonl, TensorBoard events."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record))


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN: null means "undefined"
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return x


class RunLogger:
    """Writes ``train.log``, ``metrics.jsonl`` and TensorBoard events (``tb/``) in ``work_dir``.

    ``info`` also prints (through tqdm, so progress bars stay intact) unless ``quiet``.
    """

    def __init__(self, work_dir: Path, *, quiet: bool = False, tensorboard: bool = True) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log = logging.getLogger(f"segzoo.run.{self.work_dir.resolve()}")
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
        self._file = logging.FileHandler(self.work_dir / "train.log")
        self._file.setFormatter(fmt)
        self.log.addHandler(self._file)
        self._console = None
        if not quiet:
            self._console = _TqdmHandler()
            self._console.setFormatter(logging.Formatter("%(message)s"))
            self.log.addHandler(self._console)
        self._jsonl = open(self.work_dir / "metrics.jsonl", "a")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.work_dir / "tb"))

    def info(self, msg: str) -> None:
        self.log.info(msg)

    def record(self, step: int, values: dict[str, Any], prefix: str) -> None:
        """One metrics.jsonl line and TensorBoard scalars ``prefix/key`` for numeric values."""
        self._jsonl.write(json.dumps(_finite({"iter": step, "mode": prefix, "time": time.time(), **values})) + "\n")
        self._jsonl.flush()
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def image(self, tag: str, array: np.ndarray, step: int) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, array, step, dataformats="HWC")

    def close(self) -> None:
        for h in (self._file, self._console):
            if h is not None:
                self.log.removeHandler(h)
                h.close()
        self._jsonl.close()
        if self.tb is not None:
            self.tb.close()


def write_json(path: Path, data: dict) -> None:
    """Write JSON (NaN -> null) atomically enough for a small file: temp + rename."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2))
    tmp.replace(path)
