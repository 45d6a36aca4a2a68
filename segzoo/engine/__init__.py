"""The training engine: one loop for every model of the zoo."""

from segzoo.engine.checkpoint import load_checkpoint, save_checkpoint
from segzoo.engine.evaluator import evaluate_semantic, format_metrics
from segzoo.engine.trainer import RunExistsError, Trainer, TrainResult

__all__ = [
    "RunExistsError",
    "TrainResult",
    "Trainer",
    "evaluate_semantic",
    "format_metrics",
    "load_checkpoint",
    "save_checkpoint",
]
