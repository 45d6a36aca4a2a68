"""Validation of raw config dicts into typed :mod:`segzoo.config.schema` objects.

Errors name the dotted key, the file that set it, the expected type and, for unknown keys, the
closest valid key. Component keyword arguments are checked against the registered builder's
signature (names, required arguments and annotated types).
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import types
import typing
from typing import Any, Literal, Union

from segzoo.config.loader import Sources
from segzoo.config.schema import Component, Config
from segzoo.errors import ConfigError, RegistryError
from segzoo.registry import Registry, close_matches

# builder arguments the engine supplies, which a config must not set ...
ENGINE_SET = {"dataset": {"ignore_index"}}
# ... and those it fills in when a config leaves them out (num_classes from the dataset)
ENGINE_DEFAULT = {"model": {"num_classes"}}
# other spellings a config may use for a builder keyword: {registry: {alias: keyword}}
ALIASES = {"model": {"backbone_weights": "weights_backbone", "aux_head": "auxiliary_head"}}
# keys of a component that the engine reads itself (not passed to the builder), with their types
ENGINE_KEYS: dict[str, dict[str, Any]] = {"loss": {"weight": float}, "head": {"loss_weight": float}}
# model keys that may name a part from another registry ({name: ..., **options}), checked there
MODEL_PARTS = {"backbone": "backbone", "neck": "neck", "decode_head": "head", "auxiliary_head": "head"}


def registries() -> dict[str, Registry]:
    """Every registry that configs refer to, by kind. They are filled when ``segzoo`` is imported
    (its ``__init__`` imports the data, models, losses and optim packages before any module of
    this package runs), so the config layer imports none of the layers it describes."""
    from segzoo import registry as r

    return {"model": r.MODELS, "dataset": r.DATASETS, "transform": r.TRANSFORMS,
            "loss": r.LOSSES, "optimizer": r.OPTIMIZERS, "scheduler": r.SCHEDULERS,
            "backbone": r.BACKBONES, "head": r.HEADS, "neck": r.NECKS}


class _Ctx:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def where(self, key: str) -> str:
        probe = key
        while probe:
            if probe in self.sources:
                origin = self.sources[probe]
                return f" (set in {origin})" if origin else ""
            probe = probe.rpartition(".")[0]
        return ""

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{key!r}{self.where(key)}: {message}")

    def unknown(self, key: str, name: str, valid: list[str]) -> ConfigError:
        hint = close_matches(name, valid)
        parent = key.rpartition(".")[0] or "the top level"
        mean = f"; did you mean {'.'.join([*key.split('.')[:-1], hint[0]])!r}?" if hint else ""
        return ConfigError(
            f"unknown key {key!r}{self.where(key)}{mean} Valid keys of {parent!r}: "
            f"{', '.join(sorted(valid))}"
        )


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple, cabc.Sequence):
        args = typing.get_args(tp)
        return f"list of {_describe(args[0])}" if args else "list"
    if origin in (dict, cabc.Mapping):
        return "mapping"
    if tp is Component:
        return "mapping with a 'name' key"
    return getattr(tp, "__name__", str(tp))


def convert(value: Any, tp: Any, key: str, ctx: _Ctx, registry: str | None = None) -> Any:
    """Check ``value`` against type ``tp`` and return it converted (raise ConfigError)."""
    if tp is Any or tp is typing.Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors, matching = [], []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, key, ctx, registry)
            except ConfigError as exc:
                errors.append(exc)
                if _same_kind(value, arg):
                    matching.append(exc)
        if len(errors) == 1 or any("unknown key" in str(e) for e in errors):
            raise next((e for e in errors if "unknown key" in str(e)), errors[0])
        if len(matching) == 1:  # e.g. a list given where a mapping or a list is allowed
            raise matching[0]
        raise _type_error(value, tp, key, ctx)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = close_matches(str(value), [str(c) for c in choices])
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ctx.fail(key, f"must be {_describe(tp)}, got {value!r}{extra}")
        return value
    if tp is Component:
        return _component(value, key, ctx, registry)
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, key, ctx)
    if origin in (list, tuple, cabc.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _type_error(value, tp, key, ctx)
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ctx.fail(key, f"must have {len(args)} items, got {len(value)}")
            return [convert(v, a, f"{key}.{i}", ctx, registry) for i, (v, a) in enumerate(zip(value, args))]
        item = args[0] if args else Any
        return [convert(v, item, f"{key}.{i}", ctx, registry) for i, v in enumerate(value)]
    if origin in (dict, cabc.Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise _type_error(value, tp, key, ctx)
        kt, vt = (typing.get_args(tp) or (Any, Any))
        return {convert(k, kt, key, ctx): convert(v, vt, f"{key}.{k}", ctx) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(value, tp, key, ctx)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(value, tp, key, ctx)
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(value, tp, key, ctx)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(value, tp, key, ctx)
        return value
    if isinstance(tp, type) and not isinstance(value, tp):  # other classes: best effort
        raise _type_error(value, tp, key, ctx)
    return value


def _same_kind(value: Any, tp: Any) -> bool:
    """Whether ``value`` has the container kind of ``tp`` (list vs mapping)."""
    origin = typing.get_origin(tp) or tp
    if isinstance(value, (list, tuple)):
        return origin in (list, tuple, cabc.Sequence)
    if isinstance(value, dict):
        return origin in (dict, cabc.Mapping) or tp is Component or dataclasses.is_dataclass(tp)
    return False


def _type_error(value: Any, tp: Any, key: str, ctx: _Ctx) -> ConfigError:
    return ctx.fail(key, f"must be {_describe(tp)}, got {type(value).__name__} {value!r}")


def _dataclass(cls: type, value: Any, key: str, ctx: _Ctx) -> Any:
    if not isinstance(value, dict):
        raise _type_error(value, cls, key or "config", ctx)
    hints = typing.get_type_hints(cls)
    flds = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, raw in value.items():
        sub = f"{key}.{name}" if key else str(name)
        if name not in flds:
            raise ctx.unknown(sub, str(name), list(flds))
        kwargs[name] = convert(raw, hints[name], sub, ctx, flds[name].metadata.get("registry"))
    missing = [
        n for n, f in flds.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing required key {(key + '.' if key else '') + missing[0]!r}")
    return cls(**kwargs)


def _component(value: Any, key: str, ctx: _Ctx, registry: str | None) -> Component:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise ctx.fail(key, f"must be a mapping with a 'name' key (a registered {registry}), got {value!r}")
    name = value["name"]
    kwargs = {k: v for k, v in value.items() if k != "name"}
    if registry is None:
        return Component(name, kwargs)
    reg = registries()[registry]
    try:
        reg.entry(name)
    except RegistryError as exc:
        raise ctx.fail(f"{key}.name", str(exc)) from None
    params = reg.config_params(name)
    if params is None:  # builder takes **kwargs: nothing more to check
        return Component(name, kwargs)
    engine_set = ENGINE_SET.get(registry, set())
    engine_keys = ENGINE_KEYS.get(registry, {})
    optional = engine_set | ENGINE_DEFAULT.get(registry, set())
    hints = _hints(reg.get(name))
    kwargs = _apply_aliases(kwargs, params, key, ctx, ALIASES.get(registry, {}))
    for k, v in kwargs.items():
        sub = f"{key}.{k}"
        if k in engine_keys:
            kwargs[k] = convert(v, engine_keys[k], sub, ctx)
            continue
        if k in engine_set:
            raise ctx.fail(sub, f"is set by the engine; set data.{k} instead")
        if k not in params:
            raise ctx.unknown(sub, k, [p for p in params if p not in engine_set] + list(engine_keys))
        if k in hints:
            kwargs[k] = convert(v, hints[k], sub, ctx)
        if registry == "model" and k == "backbone" and isinstance(kwargs[k], str):
            _check_backbone(kwargs[k], sub, ctx)
        if registry == "model" and k in MODEL_PARTS and isinstance(kwargs[k], dict):
            kwargs[k] = _component(kwargs[k], sub, ctx, MODEL_PARTS[k]).to_dict()
    for p in params.values():
        if p.default is p.empty and p.name not in kwargs and p.name not in optional:
            raise ctx.fail(key, f"{registry} {name!r} needs key {p.name!r}")
    return Component(name, kwargs)


def _apply_aliases(kwargs: dict, params: dict, key: str, ctx: _Ctx, aliases: dict[str, str]) -> dict:
    """Rename alias keys (``backbone_weights`` -> ``weights_backbone``, the old ``aux_head`` ->
    ``auxiliary_head``) the builder accepts under their canonical name. Giving both is an error,
    unless exactly one of them comes from a ``--set`` override, which then wins (an old override
    on a config written with the new name)."""
    out = dict(kwargs)
    for k in kwargs:
        canonical = aliases.get(k)
        if canonical is None or canonical not in params or k in params:
            continue
        value = out.pop(k)
        if canonical in kwargs:
            alias_set, canonical_set = (ctx.where(f"{key}.{n}").startswith(" (set in --set")
                                        for n in (k, canonical))
            if alias_set == canonical_set:
                raise ctx.fail(f"{key}.{k}", f"is another name for {key}.{canonical}; set only one")
            if canonical_set:
                continue
        out[canonical] = value
    return out


def _check_backbone(name: str, key: str, ctx: _Ctx) -> None:
    from segzoo.registry import BACKBONES

    try:
        BACKBONES.entry(name)
    except RegistryError as exc:
        raise ctx.fail(key, str(exc)) from None


def _hints(builder: Any) -> dict[str, Any]:
    target = builder.__init__ if isinstance(builder, type) else builder
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: check names only
        return {}


def validate_config(data: dict, sources: Sources | None = None) -> Config:
    """Validate a raw (merged) config dict into a :class:`Config`.

    Raises:
        ConfigError: unknown or misspelled key (with the closest valid one), wrong type (with the
            expected one), unknown component name, or a missing required key; the message names
            the file that set the key; a value no run can use (see
            :func:`segzoo.config.values.check_values`).
    """
    from segzoo.config.values import check_values

    ctx = _Ctx(sources or {})
    cfg = _dataclass(Config, data, "", ctx)
    check_values(cfg, ctx.fail)  # values no run can use (lr <= 0, batch_size 0, std 0, ...)
    return cfg
