"""Reading YAML configs: ``_base_`` inheritance, deep merge and ``--set`` overrides.

* ``_base_: path`` or ``_base_: [path, ...]`` (relative to the file) are loaded first, in order,
  then the file itself is merged on top. Dicts merge key by key; any other value (lists included)
  replaces the inherited one. ``_delete_: true`` inside a dict replaces the inherited dict
  instead of merging into it (e.g. to switch ``optimizer`` from SGD to AdamW without inheriting
  ``momentum``).
* Overrides ``a.b.c=value`` are applied last; ``value`` is parsed as YAML (``0.01``, ``[1, 2]``,
  ``null``, ``true`` ...).
* Every key remembers which file (or ``--set``) set it, so validation errors can name it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from segzoo.errors import ConfigError

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
OVERRIDE_SOURCE = "--set"

Sources = dict[str, str]


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse one YAML file into a dict (empty file -> {}); errors name the file and line."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _record(sources: Sources, data: Any, prefix: str, origin: str) -> None:
    if prefix:
        sources[prefix] = origin
    if isinstance(data, dict):
        for k, v in data.items():
            if k != DELETE_KEY:
                _record(sources, v, f"{prefix}.{k}" if prefix else str(k), origin)


def _forget(sources: Sources, prefix: str) -> None:
    for key in [k for k in sources if k == prefix or k.startswith(prefix + ".")]:
        del sources[key]


def merge_into(base: dict, update: dict, sources: Sources, origin: str, prefix: str = "",
               keep_delete: bool = False) -> dict:
    """Deep-merge ``update`` into ``base`` in place (see module docstring); returns ``base``.
    ``keep_delete`` keeps the ``_delete_`` markers in ``base`` (a ``_base_`` file's result, so that
    its ``_delete_`` also replaces what an earlier ``_base_`` entry of the including file set)."""
    for key, value in update.items():
        if key == DELETE_KEY:
            continue
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and not value.get(DELETE_KEY) and isinstance(base.get(key), dict):
            merge_into(base[key], value, sources, origin, dotted, keep_delete)
            sources[dotted] = sources.get(dotted, origin)
        else:
            _forget(sources, dotted)
            base[key] = copy.deepcopy(value) if keep_delete else _strip_delete(copy.deepcopy(value))
            _record(sources, value, dotted, origin)
    return base


def _strip_delete(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_delete(v) for k, v in value.items() if k != DELETE_KEY}
    return value


def load_file(path: str | os.PathLike, _stack: tuple[Path, ...] = ()) -> tuple[dict, Sources]:
    """Load ``path`` with its ``_base_`` chain. Returns (merged dict, key -> origin file)."""
    merged, sources = _load(Path(path), _stack)
    return _strip_delete(merged), sources


def _load(path: Path, _stack: tuple[Path, ...]) -> tuple[dict, Sources]:
    """:func:`load_file` keeping the ``_delete_`` markers (for the file that includes this one)."""
    path = Path(path).resolve()
    if path in _stack:
        chain = " -> ".join(str(p) for p in (*_stack, path))
        raise ConfigError(f"_base_ cycle: {chain}")
    data = read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths, got {bases!r}")
    merged: dict = {}
    sources: Sources = {}
    for base in bases:
        base_path = (path.parent / base).resolve()
        if not base_path.is_file():
            raise ConfigError(f"{path}: _base_ file {base!r} not found (looked at {base_path})")
        base_data, base_sources = _load(base_path, (*_stack, path))
        merge_into(merged, base_data, sources, "", keep_delete=True)
        sources.update(base_sources)  # each key keeps the file of the base that set it
    merge_into(merged, data, sources, _display(path), keep_delete=True)
    return merged, sources


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b=value"`` into (["a", "b"], parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key.subkey=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return key.strip().split("."), value


def apply_overrides(data: dict, sources: Sources, overrides: Iterable[str]) -> dict:
    """Apply ``key.path=value`` overrides in place (creating intermediate dicts)."""
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for i, k in enumerate(keys[:-1]):
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                where = ".".join(keys[: i + 1])
                raise ConfigError(
                    f"override {text!r}: {where!r} is a {type(child).__name__}, not a mapping"
                )
            node = child
        merge_into(node, {keys[-1]: value}, sources, f"{OVERRIDE_SOURCE} {text}",
                   ".".join(keys[:-1]))
    return data


def load_raw_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> tuple[dict, Sources]:
    """Load a config file with its bases and overrides, unvalidated."""
    data, sources = load_file(path)
    apply_overrides(data, sources, overrides)
    return data, sources
