"""Exporting trained models: ONNX (needs the ``onnx`` extra: ``pip install segzoo[onnx]``) and
int8 quantization for x86 CPUs (:mod:`segzoo.export.quantize`, needs ``segzoo[quantize]``)."""

from segzoo.errors import ExportError
from segzoo.export.onnx import (
    VERIFY_SIZES,
    export_onnx,
    export_program,
    onnxruntime_logits,
    onnxruntime_session,
    verify_sizes,
)
from segzoo.export.quantize import Int8Model, load_int8, quantize_int8, save_int8

__all__ = ["VERIFY_SIZES", "ExportError", "Int8Model", "export_onnx", "export_program", "load_int8",
           "onnxruntime_logits", "onnxruntime_session", "quantize_int8", "save_int8", "verify_sizes"]
