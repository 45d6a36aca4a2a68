"""Exporting trained models (ONNX). Needs the ``onnx`` extra: ``pip install segzoo[onnx]``."""

from segzoo.export.onnx import export_onnx, onnxruntime_logits

__all__ = ["export_onnx", "onnxruntime_logits"]
