"""What a ``compile`` setting of segzoo means, in one place: ``train.compile`` (the engine),
``optimize_for_inference(compile=...)`` and ``segzoo bench --deploy-compile`` (deploy mode), and the
benchmarks' ``--compile`` all go through :func:`compile_module`.

A setting is one of:

- ``False`` / ``None``: no compilation;
- ``True`` or ``"default"``: ``torch.compile(module)`` (Inductor);
- a mode name: ``torch.compile(module, mode=...)``: ``"reduce-overhead"`` (CUDA graphs, for
  launch-bound small batches), ``"max-autotune"``, ``"max-autotune-no-cudagraphs"``, and whatever
  other modes the installed torch knows;
- ``"backend:<name>"``: ``torch.compile(module, backend=name)``; ``"backend:eager"`` traces with
  Dynamo and runs the captured graphs eagerly (the compile path without Inductor and its C++
  toolchain: for dry runs on a CPU), ``"backend:aot_eager"`` adds AOTAutograd.

The names are checked against the installed torch when the setting is read, before any model is
built or measured (``torch.compile`` is lazy: nothing is traced until the first call).
"""

from __future__ import annotations

import torch
from torch import nn

USAGE = "true, false, a torch.compile mode (default, reduce-overhead, max-autotune, ...) or backend:<name>"


def compile_kwargs(setting: bool | str | None) -> dict | None:
    """The keyword arguments of ``torch.compile`` for ``setting``; ``None`` for no compilation.

    Raises:
        ValueError: a setting that is neither a bool nor a string, or a mode or backend the
            installed torch does not know (the message lists what it accepts).
    """
    if setting is None or setting is False:
        return None
    if setting is True or setting == "default":
        return {}
    if not isinstance(setting, str):
        raise ValueError(f"a compile setting must be {USAGE}; got {setting!r}")
    if setting.startswith("backend:"):
        kwargs = {"backend": setting.split(":", 1)[1]}
    else:
        kwargs = {"mode": setting}
    try:
        torch.compile(nn.Identity(), **kwargs)  # lazy: checks the names only
    except Exception as e:  # RuntimeError (mode), torch._dynamo's InvalidBackend (backend)
        raise ValueError(f"unknown compile setting {setting!r}: {e} (a setting is {USAGE})") from None
    return kwargs


def compile_module(module: nn.Module, setting: bool | str | None) -> nn.Module:
    """``torch.compile(module, ...)`` for ``setting`` (see the module docstring); ``module`` itself
    for ``False``/``None``. The compiled module shares ``module``'s parameters.

    Raises:
        ValueError: as :func:`compile_kwargs`.
    """
    kwargs = compile_kwargs(setting)
    return module if kwargs is None else torch.compile(module, **kwargs)
