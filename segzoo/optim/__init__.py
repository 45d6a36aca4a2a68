"""Optimizers (with parameter groups) and learning-rate schedules, registered for configs.

Importing this package fills ``OPTIMIZERS`` (``sgd``, ``adamw``) and ``SCHEDULERS`` (``poly``,
``cosine``, ``multistep``, ``constant``); see :mod:`.optimizers` and :mod:`.schedulers`.
"""

from segzoo.optim.optimizers import base_lr, param_groups
from segzoo.optim.schedulers import warmup_factor

__all__ = ["base_lr", "param_groups", "warmup_factor"]
