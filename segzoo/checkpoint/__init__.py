"""Checkpoints: atomic save/load (:mod:`.io`), whether a checkpoint fits a config
(:mod:`.compat`), and loading a trained model from config + checkpoint (:mod:`.trained_model`)."""

from segzoo.checkpoint.io import describe_checkpoint, load_checkpoint, save_checkpoint, snapshot
from segzoo.checkpoint.trained_model import load_trained_model

__all__ = ["describe_checkpoint", "load_checkpoint", "load_trained_model", "save_checkpoint", "snapshot"]
