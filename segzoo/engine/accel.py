"""How the model runs on its device: mixed precision, memory format, ``torch.compile``.

``train.amp``:

* ``null``: float32.
* ``"bf16"``: autocast to bfloat16, on CUDA (Ampere or newer) and CPU. No loss scaling is needed
  (bfloat16 has float32's exponent range).
* ``"fp16"``: autocast to float16 with a :class:`torch.amp.GradScaler` (dynamic loss scaling);
  CUDA only: on CPU it is a :class:`~segzoo.errors.ConfigError` (use ``bf16`` there).

The task's ``losses(...)`` call runs inside :meth:`Precision.autocast`, whatever the task is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from segzoo.compiling import compile_module
from segzoo.errors import ConfigError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast and gradient scaling for ``train.amp`` on ``device``.

    Raises:
        ConfigError: ``fp16`` on a non-CUDA device, ``bf16`` on a GPU without bfloat16, or an
            unknown mode.
    """

    def __init__(self, amp: str | None, device: torch.device) -> None:
        if amp is not None and amp not in AMP_DTYPES:
            raise ConfigError(f"'train.amp' must be null, 'bf16' or 'fp16', got {amp!r}")
        if amp == "fp16" and device.type != "cuda":
            raise ConfigError(
                f"'train.amp' is 'fp16' but the device is {device.type}: float16 autocast with "
                "loss scaling is for CUDA; use train.amp=bf16 on CPU, or null"
            )
        if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("'train.amp' is 'bf16' but this GPU has no bfloat16 support; use fp16")
        self.amp = amp
        self.device = device
        self.dtype = AMP_DTYPES.get(amp or "", torch.float32)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    @property
    def enabled(self) -> bool:
        return self.amp is not None

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the AMP dtype (a no-op context without AMP)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring gradients back to their true scale (before clipping)."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimizer step; with fp16, skipped when gradients overflowed (the scale then drops)."""
        self.scaler.step(optimizer)
        self.scaler.update()

    @property
    def scale(self) -> float | None:
        """The current fp16 loss scale, None without loss scaling."""
        return float(self.scaler.get_scale()) if self.scaler.is_enabled() else None

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.scaler.load_state_dict(state)


def to_device(obj: Any, device: torch.device, *, channels_last: bool = False) -> Any:
    """Move every tensor in a (nested) batch to ``device``; 4-D float tensors (images) become
    channels_last when asked."""
    if isinstance(obj, torch.Tensor):
        t = obj.to(device, non_blocking=True)
        if channels_last and t.ndim == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(obj, dict):
        return {k: to_device(v, device, channels_last=channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, channels_last=channels_last) for v in obj)
    return obj


def prepare_model(model: nn.Module, device: torch.device, *, channels_last: bool) -> nn.Module:
    """Move ``model`` to ``device`` (channels_last memory format when asked; it speeds up
    convolutions on tensor-core GPUs)."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def maybe_compile(model: nn.Module, setting: bool | str) -> nn.Module:
    """``train.compile``: :func:`segzoo.compiling.compile_module` (``true``, ``false``, a mode
    name or ``backend:<name>``).

    Raises:
        ConfigError: a mode or backend the installed torch does not know.
    """
    try:
        return compile_module(model, setting)
    except ValueError as e:
        raise ConfigError(f"'train.compile': {e}") from None


def memory_stats(device: torch.device) -> dict[str, float]:
    """Memory in MiB for the log: ``mem_mb`` (peak CUDA memory allocated since the last call) on
    CUDA, ``rss_mb`` (resident memory of this process) on CPU."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
        return {"mem_mb": peak}
    rss = _rss_bytes()
    return {"rss_mb": rss / 2**20} if rss is not None else {}


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        try:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, KiB on Linux
        except Exception:  # pragma: no cover - platforms without either
            return None


@contextlib.contextmanager
def no_sync(model: nn.Module, skip: bool) -> Iterator[None]:
    """DDP's ``no_sync()`` (gradients accumulate locally) when ``skip`` and ``model`` is DDP
    (possibly compiled); a no-op otherwise."""
    ddp = getattr(model, "_orig_mod", model)
    if skip and hasattr(ddp, "no_sync"):
        with ddp.no_sync():
            yield
    else:
        yield
