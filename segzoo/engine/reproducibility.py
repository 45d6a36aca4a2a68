"""Seeds, RNG state capture/restore and the deterministic-algorithms switch."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def rng_state() -> dict[str, Any]:
    """The global RNG states of this process (python, numpy, torch CPU, CUDA if present)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def cudnn_benchmark(setting: bool | str, *, deterministic: bool, task: str) -> bool:
    """Whether cuDNN autotunes convolution algorithms (``train.cudnn_benchmark``).

    Autotuning times every algorithm once per new input shape, which pays off only when shapes
    repeat. ``"auto"`` turns it on for semantic models (fixed-size training crops, as
    mmsegmentation does) and off for detectors, whose mask and keypoint heads see a different
    number of positive RoIs at most steps (detectron2's ``CUDNN_BENCHMARK`` is off by default). With
    it on, Mask R-CNN R50-FPN training steps on an H200 (800x1333, batch 4) took either 0.08-0.12 s
    or 0.3-1.1 s, the pattern of autotuning new shapes (docs/benchmarks.md, run 5). Off in
    deterministic mode.

    Raises:
        ValueError: ``setting`` is ``True`` with ``deterministic`` (autotuning picks by timing,
            so two runs may use different algorithms), or not a bool or ``"auto"``.
    """
    if setting == "auto":
        return not deterministic and task != "instance"
    if not isinstance(setting, bool):
        raise ValueError(f"cudnn_benchmark must be true, false or 'auto', got {setting!r}")
    if setting and deterministic:
        raise ValueError("cudnn_benchmark true contradicts deterministic true: autotuning picks "
                         "algorithms by timing; set one of them to false")
    return setting


class Determinism:
    """Context manager for ``train.deterministic``: when enabled, turns on
    ``torch.use_deterministic_algorithms`` (``warn_only``: ops without a deterministic
    implementation warn instead of failing), cuDNN's deterministic mode and cuBLAS's fixed
    workspace, and turns cuDNN autotuning off; when disabled, sets cuDNN autotuning to
    ``benchmark`` (see :func:`cudnn_benchmark`). The previous global settings come back on exit.
    """

    def __init__(self, enabled: bool, benchmark: bool = True) -> None:
        self.enabled = enabled
        self.benchmark = benchmark

    def __enter__(self) -> Determinism:
        self._saved = (torch.are_deterministic_algorithms_enabled(),
                       torch.is_deterministic_algorithms_warn_only_enabled(),
                       torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        if self.enabled:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        else:
            torch.backends.cudnn.benchmark = self.benchmark
        return self

    def __exit__(self, *exc: object) -> None:
        algos, warn_only, cudnn_det, bench = self._saved
        torch.use_deterministic_algorithms(algos, warn_only=warn_only)
        torch.backends.cudnn.deterministic = cudnn_det
        torch.backends.cudnn.benchmark = bench
