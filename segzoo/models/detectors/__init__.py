"""Instance models (torchvision's detection contract): Mask R-CNN and Keypoint R-CNN."""

from segzoo.models.detectors.builders import maskrcnn
from segzoo.models.detectors.keypointrcnn import KeypointRCNN, keypointrcnn
from segzoo.models.detectors.maskrcnn import MaskRCNN

__all__ = ["KeypointRCNN", "MaskRCNN", "keypointrcnn", "maskrcnn"]
