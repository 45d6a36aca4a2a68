"""Evaluation: scoring models on a loader (:mod:`.evaluator`), the one checkpoint evaluation
sequence (:mod:`.checkpoint_eval`), the metric tables (:mod:`.tables`) and the multi-run
comparison of ``segzoo compare`` (:mod:`.compare`)."""

from segzoo.evaluation.checkpoint_eval import evaluate_checkpoint, val_dataset
from segzoo.evaluation.evaluator import Scorer, evaluate
from segzoo.evaluation.tables import format_instance_metrics, format_metrics, format_table

__all__ = ["Scorer", "evaluate", "evaluate_checkpoint", "format_instance_metrics", "format_metrics",
           "format_table", "val_dataset"]
