"""Necks: modules between a backbone's features and the heads (FPN for Mask R-CNN)."""

from segzoo.models.necks.fpn import FPN

__all__ = ["FPN"]
