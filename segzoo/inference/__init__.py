"""Inference: inference modes (whole, slide, overlap-tile, TTA; :mod:`.modes`, :mod:`.tiling`),
checks of a model's input and output (:mod:`.checks`), instance predictions between sizes
(:mod:`.instances`) and predicting on image files (:mod:`.predict`)."""

from segzoo.inference.modes import SemanticInferencer
from segzoo.inference.predict import find_images, predict_images

__all__ = ["SemanticInferencer", "find_images", "predict_images"]
