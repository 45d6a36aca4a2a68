"""Configs: YAML files with ``_base_`` inheritance, ``--set`` overrides and typed validation.

``load_config("configs/fcn/fcn8s_vgg16_camvid-480x360.yaml", ["train.max_iters=200"])``
returns a validated :class:`Config`; errors are :class:`~segzoo.errors.ConfigError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import yaml

from segzoo.config.loader import apply_overrides, load_file, load_raw_config, parse_override
from segzoo.config.schema import Component, Config, DataConfig, SplitConfig, TrainConfig
from segzoo.config.validate import validate_config


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> Config:
    """Load, merge, override and validate a config file (see :mod:`segzoo.config.loader`)."""
    data, sources = load_raw_config(path, overrides)
    return validate_config(data, sources)


def save_config(cfg: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (reloads with :func:`load_config` to an equal config)."""
    path = Path(path)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


__all__ = [
    "Component",
    "Config",
    "DataConfig",
    "SplitConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "load_file",
    "load_raw_config",
    "parse_override",
    "save_config",
    "validate_config",
]
