"""Skip marks for the features that need a newer torch or torchvision than the core does."""

import pytest

from segzoo.data.keypoints import keypoint_transforms_supported
from segzoo.export.onnx import dynamic_pooling_supported

needs_dynamic_pooling = pytest.mark.skipif(
    not dynamic_pooling_supported(),
    reason="dynamic-size export of models with max pooling needs torch >= 2.13 (the [onnx] and [quantize] extras)")

needs_keypoint_transforms = pytest.mark.skipif(
    not keypoint_transforms_supported(),
    reason="keypoint data needs torchvision >= 0.24 (0.23 clamps keypoints into crops)")
