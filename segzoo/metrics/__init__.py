"""Metric suites: semantic (confusion matrix, boundary IoU) and instance (COCO AP)."""

from segzoo.metrics.boundary import BoundaryIoU, boundary_dilation, label_boundary, mask_boundary
from segzoo.metrics.semantic import ConfusionMatrix, metrics_from_confusion

__all__ = ["BoundaryIoU", "ConfusionMatrix", "boundary_dilation", "label_boundary", "mask_boundary",
           "metrics_from_confusion"]
