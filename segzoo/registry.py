"""One small registry mechanism: name -> builder, filled by decorators.

Used for models, backbones, heads, datasets, transforms, losses, optimizers and schedulers::

    MODELS = Registry("model")

    @MODELS.register("fcn8s", task="semantic")
    def fcn8s(*, num_classes: int = 21, backbone: str = "vgg16") -> nn.Module: ...

    MODELS.get("fcn8s")            # the builder
    MODELS.build("fcn8s", num_classes=11)

Builder convention: parameters a config may set are keyword parameters; parameters the engine
supplies itself (an optimizer's ``params``, a scheduler's ``optimizer``) are positional-only, so
config validation (:meth:`Registry.config_params`) never offers them as keys.
"""

from __future__ import annotations

import difflib
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

    def entry(self, name: str) -> Entry:
        """The :class:`Entry` for ``name``.

        Raises:
            RegistryError: unknown name; the message lists close matches and all names.
        """
        if not isinstance(name, str):
            raise RegistryError(f"{self.kind} name must be a string, got {type(name).__name__}")
        try:
            return self._entries[name]
        except KeyError:
            names = self.names()
            raise RegistryError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, names)} "
                f"Registered {self.kind}s: {', '.join(names) or '(none)'}."
            ) from None

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
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


MODELS = Registry("model")
BACKBONES = Registry("backbone")
HEADS = Registry("head")
DATASETS = Registry("dataset")
TRANSFORMS = Registry("transform")
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")
