"""Value checks of a typed config: what is wrong from the value alone, found at load time.

:func:`~segzoo.config.validate.validate_config` checks keys and types; this module checks values
that no run can use (a learning rate of 0, a batch of 0 images, a std of 0 that divides by zero, a
negative interval, an empty class list), so ``segzoo train`` fails in its first second with the
key and the file that set it, not minutes later with a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from segzoo.config.schema import Component, Config
from segzoo.errors import ConfigError

Fail = Callable[[str, str], ConfigError]


def check_values(cfg: Config, fail: Fail) -> None:
    """Raise the :class:`ConfigError` made by ``fail(key, message)`` for the first bad value.

    Checked: ``optimizer.lr`` > 0 (and any ``*lr*`` option >= 0), ``data.<split>.batch_size``
    >= 1, ``data.num_workers`` >= 0, ``data.std`` without zeros and with as many entries as
    ``data.mean``, ``train.*_interval`` / ``keep_last`` / ``num_vis`` >= 0, ``train.max_iters``
    and ``grad_accum_steps`` >= 1, ``train.clip_grad_norm`` > 0, ``data.ignore_index`` outside
    ``[0, num_classes)`` when the model's ``num_classes`` is set, and non-empty ``class_names``
    of any dataset.
    """
    lr = cfg.optimizer.kwargs.get("lr")
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise fail("optimizer.lr", f"the learning rate must be > 0, got {lr}")
    for key, value in cfg.optimizer.kwargs.items():
        if "lr" in key and key != "lr" and isinstance(value, (int, float)) and value < 0:
            raise fail(f"optimizer.{key}", f"must be >= 0, got {value}")
    for name in ("train", "val"):
        split = getattr(cfg.data, name)
        if split is None:
            continue
        if split.batch_size < 1:
            raise fail(f"data.{name}.batch_size", f"must be >= 1 image, got {split.batch_size}")
        _check_class_names(split.dataset, f"data.{name}.dataset", fail)
    if cfg.data.num_workers < 0:
        raise fail("data.num_workers", f"must be >= 0 (0: load in the main process), got {cfg.data.num_workers}")
    if any(s == 0 for s in cfg.data.std):
        raise fail("data.std", f"contains 0 ({cfg.data.std}): images are divided by std; use the "
                               "per-channel standard deviation of the data (ImageNet: [0.229, 0.224, 0.225])")
    if len(cfg.data.std) != len(cfg.data.mean):
        raise fail("data.std", f"has {len(cfg.data.std)} values but data.mean has {len(cfg.data.mean)}")
    tc = cfg.train
    for key in ("max_iters", "grad_accum_steps"):
        if getattr(tc, key) < 1:
            raise fail(f"train.{key}", f"must be >= 1, got {getattr(tc, key)}")
    for key in ("log_interval", "eval_interval", "checkpoint_interval", "keep_last", "num_vis", "seed"):
        if getattr(tc, key) < 0:
            raise fail(f"train.{key}", f"must be >= 0 (0 turns it off), got {getattr(tc, key)}")
    if tc.log_interval == 0:
        raise fail("train.log_interval", "must be >= 1 (iterations between log lines)")
    if tc.clip_grad_norm is not None and not tc.clip_grad_norm > 0:
        raise fail("train.clip_grad_norm", f"must be > 0 (or null: no clipping), got {tc.clip_grad_norm}")
    num_classes = cfg.model.kwargs.get("num_classes")
    ignore = cfg.data.ignore_index
    if isinstance(num_classes, int) and 0 <= ignore < num_classes:
        raise fail("data.ignore_index", f"{ignore} is a real class index (num_classes {num_classes}); "
                                        "use a value outside [0, num_classes), e.g. 255")


def _check_class_names(dataset: Component, key: str, fail: Fail) -> None:
    names = dataset.kwargs.get("class_names")
    if names is not None and len(names) == 0:
        raise fail(f"{key}.class_names", "is empty: list one name per class")
