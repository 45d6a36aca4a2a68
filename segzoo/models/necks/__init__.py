"""Necks: modules between a backbone's features and the heads, registered in
:data:`segzoo.registry.NECKS` (``fpn``: Mask R-CNN's FPN, also a neck of composed semantic models)."""

from segzoo.models.necks.fpn import FPN, fpn

__all__ = ["FPN", "fpn"]
