"""Inference: loading a trained model and predicting on image files."""

from segzoo.inference.predict import load_trained_model, predict_images

__all__ = ["load_trained_model", "predict_images"]
