"""How a head learns what it decodes: the feature list's channels and strides, and the errors
raised when a head and a backbone (or neck) do not fit together.

Every registered head builder takes ``(features, num_classes, /, **options)`` where ``features``
is a :class:`FeatureInfo` read from the backbone (``out_channels``, ``out_strides``) or from the
neck; the builder picks the features it needs by stride (the v3+ decoder the stride-4 one, the
FCN skip head pool4/pool3, the U-Net decoder every stage) and raises :func:`incompatible` errors at
build time, never at the first forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class FeatureInfo:
    """What a feature list holds: ``channels[i]`` and ``strides[i]`` of feature ``i`` (increasing
    stride), and ``source``, how messages name it (``"backbone 'resnet18' (output_stride 8)"``).
    """

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    source: str = "the backbone"

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.strides) or not self.channels:
            raise ValueError(f"{self.source}: out_channels {self.channels} and out_strides "
                             f"{self.strides} must be non-empty and of equal length")

    @classmethod
    def of(cls, module: nn.Module, source: str) -> FeatureInfo:
        """Read ``out_channels`` / ``out_strides`` of a backbone (or a neck, whose ``out_channels``
        may be one int for every level and whose strides may be called ``strides``)."""
        strides = tuple(int(s) for s in getattr(module, "out_strides", getattr(module, "strides", ())))
        channels = module.out_channels
        if isinstance(channels, int):
            channels = (channels,) * len(strides)
        return cls(tuple(int(c) for c in channels), strides, source)

    def __len__(self) -> int:
        return len(self.channels)

    def describe(self) -> str:
        return f"{self.source} (strides {self.strides}, channels {self.channels})"

    def index(self, i: int, *, head: str, what: str = "in_index") -> int:
        """``i`` as a non-negative feature index (negative counts from the deepest).

        Raises:
            ValueError: ``i`` out of range (an :func:`incompatible` error).
        """
        n = len(self)
        if not -n <= i < n:
            raise incompatible(head, self, f"{what}={i} is out of range for {n} feature level(s)",
                               f"use an index in [{-n}, {n - 1}] or a backbone with more levels")
        return i % n

    def last_at_most(self, stride: int, before: int) -> int | None:
        """Index of the last feature before ``before`` whose stride is at most ``stride``."""
        for i in range(before - 1, -1, -1):
            if self.strides[i] <= stride:
                return i
        return None


def incompatible(head: str, features: FeatureInfo, problem: str, fix: str) -> ValueError:
    """The build-time error of a head that cannot decode ``features``: names the head, the
    backbone (with its strides and channels), the problem and what fits instead. The error is
    marked (``error.incompatible = True``) so that the model builder can append the registered
    backbones that do fit."""
    err = ValueError(f"{head} cannot decode {features.describe()}: {problem}; {fix}")
    err.incompatible = True  # type: ignore[attr-defined]
    err.head = head  # type: ignore[attr-defined]
    return err


def as_tuple(values: Sequence[int] | None) -> tuple[int, ...] | None:
    return None if values is None else tuple(int(v) for v in values)
