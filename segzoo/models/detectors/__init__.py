"""Instance segmentation models (torchvision's detection contract): Mask R-CNN."""

from segzoo.models.detectors.builders import maskrcnn
from segzoo.models.detectors.maskrcnn import MaskRCNN

__all__ = ["MaskRCNN", "maskrcnn"]
