"""Skip marks for tests of dynamic-size export (ONNX and int8), which need torch >= 2.13."""

import pytest

from segzoo.export.onnx import dynamic_pooling_supported

needs_dynamic_pooling = pytest.mark.skipif(
    not dynamic_pooling_supported(),
    reason="dynamic-size export of models with max pooling needs torch >= 2.13 (the [onnx] and [quantize] extras)")
