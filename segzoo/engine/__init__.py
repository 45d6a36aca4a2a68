"""The training engine: one loop for every model of the zoo (:class:`Trainer`)."""

from segzoo.engine.trainer import Trainer, TrainResult

__all__ = ["TrainResult", "Trainer"]
