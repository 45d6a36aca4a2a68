"""Metric suites: semantic (confusion matrix based)."""

from segzoo.metrics.semantic import ConfusionMatrix, metrics_from_confusion

__all__ = ["ConfusionMatrix", "metrics_from_confusion"]
