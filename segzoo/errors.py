"""Exceptions raised by segzoo.

Every error names what is wrong (a key, a file, a name) and what to do about it.
"""

from __future__ import annotations


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
