"""The run folder's records: plain-text log, metrics.jsonl, TensorBoard events."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from segzoo.data.transforms import denormalize
from segzoo.visualize import panel, save_rgb


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record))


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN: null means "undefined"
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return x


def _scalars(values: dict[str, Any], prefix: str) -> dict[str, float]:
    """Finite numbers of ``values`` as TensorBoard tags; nested dicts (per-class IoU) become
    ``prefix/key/sub``."""
    out = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}/{k}"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[f"{prefix}/{k}"] = v
    return out


def trim_jsonl(path: Path, after: int) -> None:
    """Drop the lines of ``metrics.jsonl`` logged after iteration ``after`` (by a run that went on
    past its last checkpoint before being killed), and any unreadable line (a write cut short)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("iter", 0) <= after:
            kept.append(line)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(x + "\n" for x in kept))
    tmp.replace(path)


class RunLogger:
    """Writes ``train.log``, ``metrics.jsonl`` and TensorBoard events (``tb/``) in ``work_dir``.

    ``info`` also prints (through tqdm, so progress bars stay intact) unless ``quiet``.
    ``resume_from``: the iteration a resumed run restarts from; records logged after it by the
    interrupted run are dropped (metrics.jsonl lines, TensorBoard events via ``purge_step``).
    """

    def __init__(self, work_dir: Path, *, quiet: bool = False, tensorboard: bool = True,
                 resume_from: int | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if resume_from is not None:
            trim_jsonl(self.work_dir / "metrics.jsonl", resume_from)
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

            purge = resume_from + 1 if resume_from is not None else None
            self.tb = SummaryWriter(str(self.work_dir / "tb"), purge_step=purge)

    def info(self, msg: str) -> None:
        self.log.info(msg)

    def record(self, step: int, values: dict[str, Any], prefix: str) -> None:
        """One metrics.jsonl line and TensorBoard scalars ``prefix/key`` for numeric values."""
        self._jsonl.write(json.dumps(_finite({"iter": step, "mode": prefix, "time": time.time(), **values})) + "\n")
        self._jsonl.flush()
        if self.tb is not None:
            for tag, v in _scalars(values, prefix).items():
                self.tb.add_scalar(tag, v, step)

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


class NullLogger:
    """The logger of ranks other than 0: records nothing."""

    def info(self, msg: str) -> None:
        pass

    def record(self, step: int, values: dict[str, Any], prefix: str) -> None:
        pass

    def image(self, tag: str, array: np.ndarray, step: int) -> None:
        pass

    def close(self) -> None:
        pass


@torch.inference_mode()
def write_overlays(model: nn.Module, predict: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                   dataset: Any, num: int, folder: Path, step: int, logger: Any, device: torch.device,
                   *, mean: Sequence[float], std: Sequence[float], ignore_index: int) -> None:
    """Panels [image | ground truth | prediction] of the first ``num`` samples of ``dataset``,
    as ``folder/iter<step>_<i>.png`` and TensorBoard images ``val/sample_i`` (model mode kept)."""
    was_training = model.training
    model.eval()
    palette = dataset.colors()
    for i in range(min(num, len(dataset))):
        sample = dataset[i]
        image = sample["image"].as_subclass(torch.Tensor).unsqueeze(0).to(device)
        pred = predict(model, image)[0]
        rgb = denormalize(image, mean, std)[0]
        arr = panel(rgb, sample["mask"], pred, palette, ignore_index)
        save_rgb(arr, folder / f"iter{step:06d}_{i}.png")
        logger.image(f"val/sample_{i}", arr, step)
    model.train(was_training)


def run_summary(work_dir: Path, checkpoint: Path, key: str, score: Any) -> str:
    """The closing lines of a run: where its records are, and its final key metric."""
    wd = work_dir
    shown = f"  ({key} {100 * score:.2f})" if isinstance(score, float) and math.isfinite(score) else ""
    return "\n".join([
        f"Run folder: {wd}",
        f"  resolved config  {wd / 'config.yaml'}",
        f"  log              {wd / 'train.log'}",
        f"  metrics          {wd / 'metrics.json'}{shown}",
        f"  checkpoint       {checkpoint}",
        f"  tensorboard      {wd / 'tb'}   (tensorboard --logdir {wd / 'tb'})",
        f"  overlays         {wd / 'vis'}",
    ])


def write_json(path: Path, data: dict) -> None:
    """Write JSON (NaN -> null) atomically enough for a small file: temp + rename."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2))
    tmp.replace(path)
