"""Inference: inference modes (whole, slide, overlap-tile, TTA), scoring loops, and predicting on
image files. Submodules are imported lazily (the engine imports :mod:`segzoo.inference.evaluate`,
and :mod:`segzoo.inference.predict` imports the engine)."""

from __future__ import annotations

import importlib

_LAZY = {
    "load_trained_model": "segzoo.inference.predict",
    "predict_images": "segzoo.inference.predict",
    "SemanticInferencer": "segzoo.inference.modes",
    "evaluate": "segzoo.inference.evaluate",
    "Scorer": "segzoo.inference.evaluate",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segzoo.inference' has no attribute {name!r}")


__all__ = list(_LAZY)
