"""Exceptions raised by segzoo.

Every error names what is wrong (a key, a file, a name) and what to do about it.
"""

from __future__ import annotations

from pathlib import Path


class SegzooError(Exception):
    """Base class of all segzoo errors."""


class RegistryError(SegzooError, KeyError):
    """An unknown name was looked up in a registry (subclass of ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


class ConfigError(SegzooError, ValueError):
    """A config file or override is invalid: unknown key, wrong type, bad ``_base_``."""


class DataError(SegzooError, ValueError):
    """A dataset file is missing, unreadable or inconsistent (names the file)."""


class CheckpointError(SegzooError, ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the config."""


class NonFiniteError(SegzooError, FloatingPointError):
    """Training produced a NaN or inf loss or weights (subclass of ``FloatingPointError``)."""


class EvaluationError(SegzooError, RuntimeError):
    """Evaluation during training failed; the training state was saved before it (the message
    names the checkpoint and how to evaluate it once the cause is fixed)."""


class RunExistsError(SegzooError, FileExistsError):
    """The work dir already holds a finished run (its ``metrics.json``); choose another one."""


class ExportError(SegzooError, RuntimeError):
    """A model cannot be exported, or the exported graph disagrees with PyTorch (names the size
    and the largest difference)."""


class WeightsError(SegzooError, ValueError):
    """Pretrained weights cannot be found, read or loaded into a backbone (names the file)."""


class PeerUnavailable(SegzooError):
    """A benchmark peer library (smp) is not installed: ``pip install -e '.[bench]'``."""


class PredictionError(SegzooError):
    """Some images could not be predicted; every other image was written.

    Attributes:
        records: the written images' records (as :func:`predict_images` returns).
        failures: ``(image path, reason)`` per failed image.
    """

    def __init__(self, records: list[dict], failures: list[tuple[Path, str]]) -> None:
        self.records, self.failures = records, failures
        lines = "\n".join(f"  {path}: {reason}" for path, reason in failures)
        super().__init__(f"{len(failures)} image(s) could not be predicted ({len(records)} written):\n{lines}")
