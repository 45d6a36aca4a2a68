"""Exporting trained models (ONNX). Needs the ``onnx`` extra: ``pip install segzoo[onnx]``."""

from segzoo.errors import ExportError
from segzoo.export.onnx import (
    VERIFY_SIZES,
    export_onnx,
    export_program,
    onnxruntime_logits,
    onnxruntime_session,
    verify_sizes,
)

__all__ = ["VERIFY_SIZES", "ExportError", "export_onnx", "export_program", "onnxruntime_logits",
           "onnxruntime_session", "verify_sizes"]
