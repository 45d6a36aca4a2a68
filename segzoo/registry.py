"""One small registry mechanism: name -> builder, filled by decorators.

Used for models, backbones, heads, necks, datasets, transforms, losses, optimizers and schedulers::

    MODELS = Registry("model")

    @MODELS.register("fcn8s", task="semantic")
    def fcn8s(*, num_classes: int = 21, backbone: str = "vgg16") -> nn.Module: ...

    MODELS.get("fcn8s")            # the builder
    MODELS.build("fcn8s", num_classes=11)

A registry may also hand whole families of names to one builder through a prefix
(:meth:`Registry.register_prefix`): ``BACKBONES.get("tu-resnet18")`` is timm's ``resnet18``
through the timm adapter; such names resolve like registered ones everywhere (``get``, ``entry``,
``config_params``, ``in``, config validation).

Builder convention: parameters a config may set are keyword parameters; parameters the engine
supplies itself (an optimizer's ``params``, a scheduler's ``optimizer``) are positional-only, so
config validation (:meth:`Registry.config_params`) never offers them as keys.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from segzoo.errors import RegistryError


def close_matches(name: str, candidates: list[str], n: int = 3) -> list[str]:
    """Up to ``n`` candidates similar to ``name`` (difflib ratio >= 0.5), best first."""
    lowered = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def did_you_mean(name: str, candidates: list[str]) -> str:
    """A "did you mean ...?" phrase for an error message, or '' when nothing is close."""
    hits = close_matches(name, candidates)
    return f"; did you mean {' or '.join(repr(h) for h in hits)}?" if hits else ""


@dataclass(frozen=True)
class Entry:
    """A registered builder and its metadata (e.g. ``task="semantic"`` for models)."""

    name: str
    builder: Callable[..., Any]
    meta: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Maps lower-case names to builders (functions or classes).

    Args:
        kind: what the registry holds, used in messages ("model", "backbone", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._prefixes: dict[str, _Prefix] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable:
        """Decorator registering a builder under ``name`` (default: the object's ``__name__``).

        Raises:
            ValueError: if the name is already taken or is not lower case.
        """

        def decorator(obj: Callable) -> Callable:
            key = name or obj.__name__
            if key != key.lower():
                raise ValueError(f"{self.kind} names are lower case; got {key!r}")
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = Entry(key, obj, dict(meta))
            return obj

        return decorator

    def register_prefix(
        self,
        prefix: str,
        builder: Callable[..., Any],
        *,
        known: Callable[[str], bool] | None = None,
        suggest: Callable[[str], list[str]] | None = None,
        **meta: Any,
    ) -> None:
        """Resolve every name ``prefix + rest`` to ``builder(rest, **kwargs)``.

        Args:
            prefix: e.g. ``"timm:"`` or ``"tu-"``; matched before registered names.
            builder: called as ``builder(rest, **kwargs)``; its first parameter must be
                positional-only (config validation offers only the others as keys).
            known: ``known(rest)`` says whether ``rest`` exists (e.g. ``timm.is_model``); unknown
                rests raise :class:`RegistryError` like unknown names.
            suggest: ``suggest(rest)`` lists close existing rests for the error message.
            **meta: metadata of the resolved entries (e.g. ``paper=``).

        Raises:
            ValueError: the prefix is taken, not lower case, or shadows a registered name.
        """
        if prefix != prefix.lower() or not prefix:
            raise ValueError(f"{self.kind} prefixes are non-empty and lower case; got {prefix!r}")
        if prefix in self._prefixes:
            raise ValueError(f"{self.kind} prefix {prefix!r} is already registered")
        self._prefixes[prefix] = _Prefix(prefix, builder, known, suggest, dict(meta))

    def prefixes(self) -> list[str]:
        """Registered prefixes, sorted (e.g. ``['timm:', 'tu-']``)."""
        return sorted(self._prefixes)

    def prefix_meta(self, prefix: str) -> dict[str, Any]:
        """Metadata given to :meth:`register_prefix` for ``prefix`` (KeyError if unknown)."""
        return dict(self._prefixes[prefix].meta)

    def entry(self, name: str) -> Entry:
        """The :class:`Entry` for ``name`` (a registered name or ``prefix + rest``).

        Raises:
            RegistryError: unknown name; the message lists close matches and all names.
        """
        if not isinstance(name, str):
            raise RegistryError(f"{self.kind} name must be a string, got {type(name).__name__}")
        if name in self._entries:
            return self._entries[name]
        for prefix, fam in self._prefixes.items():
            if name.startswith(prefix):
                return fam.entry(name, self.kind)
        names = self.names()
        extra = f" Prefixes: {', '.join(p + '<name>' for p in self.prefixes())}." if self._prefixes else ""
        raise RegistryError(
            f"unknown {self.kind} {name!r}{did_you_mean(name, names)} "
            f"Registered {self.kind}s: {', '.join(names) or '(none)'}.{extra}"
        )

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered as ``name`` (raises :class:`RegistryError` if unknown)."""
        return self.entry(name).builder

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the builder registered as ``name`` with the given arguments."""
        return self.get(name)(*args, **kwargs)

    def names(self, **meta: Any) -> list[str]:
        """Sorted registered names, optionally only those whose metadata match ``meta``."""
        return sorted(
            n for n, e in self._entries.items() if all(e.meta.get(k) == v for k, v in meta.items())
        )

    def config_params(self, name: str) -> dict[str, inspect.Parameter] | None:
        """Keyword parameters a config may set for ``name``; ``None`` if it takes ``**kwargs``."""
        builder = self.get(name)
        target = builder.__init__ if inspect.isclass(builder) else builder
        params = inspect.signature(target).parameters
        out = {}
        for p in params.values():
            if p.kind is p.VAR_KEYWORD:
                return None
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self":
                out[p.name] = p
        return out

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._entries:
            return True
        try:
            self.entry(name)
        except RegistryError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


@dataclass(frozen=True)
class _Prefix:
    prefix: str
    builder: Callable[..., Any]
    known: Callable[[str], bool] | None
    suggest: Callable[[str], list[str]] | None
    meta: dict[str, Any]

    def entry(self, name: str, kind: str) -> Entry:
        rest = name[len(self.prefix):]
        if not rest or (self.known is not None and not self.known(rest)):
            hits = self.suggest(rest) if (self.suggest and rest) else []
            hint = f"; did you mean {' or '.join(repr(self.prefix + h) for h in hits)}?" if hits else ""
            raise RegistryError(f"unknown {kind} {name!r}: {rest!r} is not known to the "
                                f"{self.prefix!r} family{hint}")
        return Entry(name, _bind_first(self.builder, rest), {**self.meta, "prefix": self.prefix})


def _bind_first(builder: Callable[..., Any], first: str) -> Callable[..., Any]:
    """``builder`` with its first (positional-only) argument fixed, keeping the signature and
    annotations of the rest, so config validation sees the right keys and types."""

    @functools.wraps(builder)
    def bound(*args: Any, **kwargs: Any) -> Any:
        return builder(first, *args, **kwargs)

    sig = inspect.signature(builder)
    params = list(sig.parameters.values())
    bound.__signature__ = sig.replace(parameters=params[1:])  # type: ignore[attr-defined]
    bound.__annotations__ = {k: v for k, v in builder.__annotations__.items() if k != params[0].name}
    return bound


MODELS = Registry("model")
BACKBONES = Registry("backbone")
HEADS = Registry("head")
NECKS = Registry("neck")
DATASETS = Registry("dataset")
TRANSFORMS = Registry("transform")
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")
