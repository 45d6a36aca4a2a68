"""A test-only semantic model (a few thousand parameters) registered as ``tiny_seg``, and tiny
configs for it, so engine tests run in seconds. Also used by the subprocess helper
``train_child.py``."""

from __future__ import annotations

import os
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from segzoo.registry import MODELS

_SIGNAL_AT: dict = {}


def signal_at(forward_call: int, sig: int, group: bool = False) -> None:
    """Make the process send ``sig`` to itself (``group``: to its whole process group, dataloader
    workers included, as Ctrl-C in a terminal does) during its ``forward_call``-th training
    forward."""
    _SIGNAL_AT.update(n=forward_call, sig=sig, count=0, group=group)


class TinySeg(nn.Module):
    """conv-norm-relu, strided conv-norm-relu -> dropout -> 1x1 classifier (+ aux 1x1), upsampled."""

    task = "semantic"

    def __init__(self, num_classes: int, width: int, norm: str, dropout: float, aux: bool) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride, 1, bias=norm == "none")]
            if norm == "bn":
                layers.append(nn.BatchNorm2d(cout))
            elif norm == "gn":
                layers.append(nn.GroupNorm(2, cout))
            return layers + [nn.ReLU(inplace=True)]

        self.backbone = nn.Sequential(*block(3, width, 1), *block(width, 2 * width, 2))
        self.decode_head = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(2 * width, num_classes, 1))
        self.auxiliary_head = nn.Conv2d(2 * width, num_classes, 1) if aux else None
        self.loss_weights = {"out": 1.0, "aux": 0.4} if aux else {"out": 1.0}

    def forward(self, images: Tensor) -> Tensor | dict[str, Tensor]:
        if self.training and _SIGNAL_AT:
            _SIGNAL_AT["count"] += 1
            if _SIGNAL_AT["count"] == _SIGNAL_AT["n"]:
                if _SIGNAL_AT["group"]:
                    os.killpg(os.getpgid(0), _SIGNAL_AT["sig"])
                else:
                    os.kill(os.getpid(), _SIGNAL_AT["sig"])
        size = images.shape[-2:]
        features = self.backbone(images)
        out = F.interpolate(self.decode_head(features), size, mode="bilinear", align_corners=False)
        if not self.training:
            return out
        outputs = {"out": out}
        if self.auxiliary_head is not None:
            outputs["aux"] = F.interpolate(self.auxiliary_head(features), size, mode="bilinear",
                                           align_corners=False)
        return outputs


def tiny_seg(*, num_classes: int = 4, width: int = 8, norm: str = "bn", dropout: float = 0.1,
             aux: bool = True) -> TinySeg:
    return TinySeg(num_classes, width, norm, dropout, aux)


if "tiny_seg" not in MODELS:
    MODELS.register("tiny_seg", task="semantic", test_only=True)(tiny_seg)


TINY_CONFIG = """
model: {{name: tiny_seg}}
data:
  train:
    dataset: {{name: shapes, split: train, num_images: {n_train}, size: [32, 32]}}
    transforms: [{{name: random_flip, p: 0.5}}]
    batch_size: 4
  val:
    dataset: {{name: shapes, split: val, num_images: {n_val}, size: [32, 32]}}
    batch_size: 2
  num_workers: 0
loss: {{name: cross_entropy}}
optimizer: {{name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0001}}
scheduler: {{name: poly, power: 0.9, warmup_iters: 2}}
train:
  max_iters: 8
  log_interval: 2
  eval_interval: 4
  checkpoint_interval: 2
  num_vis: 1
  device: cpu
"""


def write_tiny_config(folder: Path, name: str = "tiny.yaml", *, n_train: int = 10, n_val: int = 5,
                      extra: str = "") -> Path:
    """Write the tiny config (plus ``extra`` YAML merged on top via ``_base_``) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / "_tiny_base.yaml"
    base.write_text(TINY_CONFIG.format(n_train=n_train, n_val=n_val))
    path = folder / name
    path.write_text(f"_base_: {base.name}\n{extra}")
    return path
