"""Parameters and FLOPs of one forward pass (shared by ``segzoo bench`` and
``benchmarks/model_table.py``).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one eval forward: FLOPs =
2 x multiply-accumulates of convolutions and matrix products; normalisation, activations,
pooling and interpolation are not counted. Models built on the ``meta`` device are counted without
memory or compute (the counts depend only on shapes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (training-only heads included)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, size: int | Sequence[int] = 512, batch: int = 1) -> int:
    """FLOPs (2 x MACs) of one eval forward of a (batch, 3, H, W) zero input; ``size`` is S
    (square) or (H, W). Works on meta-device models. The model is left in eval mode. Instance
    models (torchvision's detection contract) get a list of (3, H, W) images."""
    from segzoo.bench.timing import model_inputs

    h, w = (size, size) if isinstance(size, int) else tuple(size)
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(batch, 3, h, w, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(model_inputs(model, x))
    return counter.get_total_flops()
