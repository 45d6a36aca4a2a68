"""Loading pretrained weights from a local file or a URL, with clear key checking.

Nothing is downloaded unless a URL is given explicitly (``torch.hub`` caches it under
``$TORCH_HOME``). Relative paths that do not exist from the working directory are looked up under
the shared data folder, like dataset roots (``weights/mobilenet_v2_imagenet_features.safetensors``
finds ``$SEGZOO_DATA/weights/...``; see :func:`segzoo.paths.resolve_data_path`). Supported files: ``.safetensors`` and anything ``torch.load`` reads (a state
dict, or a checkpoint dict holding one under ``"model"`` / ``"state_dict"``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from segzoo.errors import WeightsError

log = logging.getLogger(__name__)


def load_state_dict(source: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict from a path or an ``http(s)://`` URL.

    Relative paths resolve as :func:`resolve_weights_path` says.

    Raises:
        WeightsError: the file does not exist or cannot be parsed as weights.
    """
    src = str(source)
    if src.startswith(("http://", "https://")):
        try:
            state = torch.hub.load_state_dict_from_url(src, map_location="cpu", check_hash=False)
        except Exception as exc:  # network errors have many types
            raise WeightsError(f"could not download weights from {src}: {exc}") from exc
    else:
        path = resolve_weights_path(src)
        if not path.is_file():
            raise WeightsError(
                f"weights file {path} does not exist (relative paths are also looked up under the "
                f"shared data folder, $SEGZOO_DATA); give an existing path or a URL"
            )
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"could not read weights from {path}: {exc}") from exc
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{src} does not hold a state dict (name -> tensor)")
    return dict(state)


def resolve_weights_path(path: str | os.PathLike) -> Path:
    """A weights path as it will be read: absolute, relative to the working directory if it exists
    there, else under the shared data folder (``$SEGZOO_DATA`` or ``../shared/data``)."""
    from segzoo.paths import resolve_data_path

    return resolve_data_path(path)


def load_weights(
    module: nn.Module,
    state: Mapping[str, Tensor],
    *,
    source: str = "state dict",
    allow_unexpected: bool = True,
) -> list[str]:
    """Copy ``state`` into ``module``, checking every key and shape.

    Args:
        module: the module to fill (e.g. a backbone).
        state: name -> tensor, keyed like ``module.state_dict()``.
        source: where the weights came from, for messages.
        allow_unexpected: keys of ``state`` that ``module`` lacks are logged and skipped (e.g. a
            classifier the backbone drops); with ``False`` they raise.

    Returns:
        The unexpected keys that were skipped.

    Raises:
        WeightsError: keys of ``module`` missing from ``state`` (the module would be left partly
            random), a shape mismatch, or unexpected keys when not allowed; the message lists them.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: weights {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_short(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_short(mismatched)}")
    if unexpected and not allow_unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_short(unexpected)}")
    if problems:
        raise WeightsError(
            f"weights from {source} do not fit {type(module).__name__}: " + "; ".join(problems)
        )
    module.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    if unexpected:
        log.info("weights from %s: skipped %d unexpected key(s): %s", source, len(unexpected),
                 _short(unexpected))
    return unexpected


def _short(items: list[str], n: int = 6) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... (+{len(items) - n} more)" if len(items) > n else "")
