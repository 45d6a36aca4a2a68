"""Snapshots of the named semantic models: state-dict keys and shapes, parameter counts and output
checksums for a fixed seed, so a refactoring of how models are assembled can prove it changed
nothing users see (checkpoints, torchvision conversion, outputs).

``python tests/helpers/named_model_snapshot.py`` (re)writes ``tests/models/named_models.json``; run it only
when a model is meant to change, and say so in the commit. ``tests/models/test_named_model_snapshot.py``
compares every case against the file.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

FILE = Path(__file__).resolve().parents[1] / "models" / "named_models.json"

# (id, builder name, keyword arguments, run: whether outputs are computed; without, the model is
# built on the meta device for its keys, shapes and parameter count only)
CASES: list[tuple[str, str, dict[str, Any], bool]] = [
    # the default (paper) configurations, keys and shapes only
    ("fcn32s-default", "fcn32s", {}, False),
    ("fcn16s-default", "fcn16s", {}, False),
    ("fcn8s-default", "fcn8s", {}, False),
    ("fcn-default", "fcn", {}, False),
    ("unet-default", "unet", {}, False),
    ("deeplabv2-default", "deeplabv2", {}, False),
    ("deeplabv3-default", "deeplabv3", {}, False),
    ("deeplabv3plus-default", "deeplabv3plus", {}, False),
    ("pspnet-default", "pspnet", {}, False),
    ("fcn_resnet50-aux", "fcn_resnet50", {"aux_loss": True}, False),
    ("deeplabv3_resnet50-aux", "deeplabv3_resnet50", {"aux_loss": True}, False),
    ("deeplabv3_resnet101", "deeplabv3_resnet101", {}, False),
    ("deeplabv3plus-xception65", "deeplabv3plus", {"backbone": "xception65"}, False),
    # small configurations, outputs too
    ("fcn32s-vgg16bn", "fcn32s", {"backbone": "vgg16_bn", "fc_channels": 16, "fc_kernel_size": 3}, True),
    ("fcn16s-vgg16", "fcn16s", {"backbone": "vgg16", "fc_channels": 16, "fc_kernel_size": 3}, False),
    ("fcn8s-vgg16bn", "fcn8s", {"backbone": "vgg16_bn", "fc_channels": 16, "fc_kernel_size": 3}, True),
    ("fcn8s-resnet18", "fcn8s", {"backbone": "resnet18", "fc_channels": 16, "fc_kernel_size": 1}, True),
    ("fcn8s-mobilenet_v2", "fcn8s", {"backbone": "mobilenet_v2", "fc_channels": 16, "fc_kernel_size": 1}, True),
    ("fcn16s-tu-resnet18", "fcn16s", {"backbone": "tu-resnet18", "fc_channels": 16, "fc_kernel_size": 1}, True),
    ("fcn-resnet18-aux", "fcn", {"backbone": "resnet18", "channels": 16, "auxiliary_head": True}, True),
    ("fcn-mobilenet_v2-os16", "fcn", {"backbone": "mobilenet_v2", "output_stride": 16}, True),
    ("unet-original", "unet", {"base_channels": 8}, True),
    ("unet-original-valid", "unet", {"base_channels": 8, "padding": "valid", "norm": "bn", "depth": 3}, True),
    ("unet-resnet18", "unet", {"backbone": "resnet18", "decoder_channels": (32, 16, 16, 8, 8)}, True),
    ("unet-tu-resnet18", "unet", {"backbone": "tu-resnet18", "decoder_channels": (16, 16, 8, 8, 8),
                                  "upsampling": "bilinear"}, True),
    ("deeplabv2-resnet18", "deeplabv2", {"backbone": "resnet18"}, True),
    ("deeplabv2-resnet18-vgg-branches", "deeplabv2", {"backbone": "resnet18", "branch_channels": 16,
                                                      "atrous_rates": (2, 4, 8, 12), "auxiliary_head": True}, True),
    ("deeplabv3-resnet18-mg", "deeplabv3", {"backbone": "resnet18", "multi_grid": (1, 2),
                                            "output_stride": 8, "channels": 16}, True),
    ("deeplabv3-mobilenet_v2", "deeplabv3", {"backbone": "mobilenet_v2", "separable": True,
                                             "bottleneck": True, "norm": "gn", "channels": 16,
                                             "auxiliary_head": True}, True),
    ("deeplabv3plus-resnet18", "deeplabv3plus", {"backbone": "resnet18", "channels": 16,
                                                 "low_level_channels": 8}, True),
    ("deeplabv3plus-mobilenet_v2", "deeplabv3plus", {"backbone": "mobilenet_v2", "separable": False,
                                                     "channels": 16, "auxiliary_head": True}, True),
    ("deeplabv3plus-tu-resnet18", "deeplabv3plus", {"backbone": "tu-resnet18", "norm": None,
                                                    "channels": 16, "auxiliary_head": True,
                                                    "aux_loss_weight": 0.3}, True),
    ("pspnet-resnet18", "pspnet", {"backbone": "resnet18", "channels": 16, "ppm_channels": 8}, True),
    ("pspnet-mobilenet_v2", "pspnet", {"backbone": "mobilenet_v2", "channels": 16, "auxiliary_head": False,
                                       "bins": (1, 3)}, True),
]


def build(name: str, kwargs: dict[str, Any]) -> torch.nn.Module:
    import segzoo.models as models

    kwargs = {"num_classes": 4, **kwargs}
    return getattr(models, name)(**kwargs)


def snapshot(name: str, kwargs: dict[str, Any], run: bool) -> dict[str, Any]:
    """Keys -> shapes, parameter count, model.loss_weights and, with ``run``, checksums of the
    eval logits and of every training output for a fixed input."""
    torch.manual_seed(0)
    if not run:
        with torch.device("meta"):
            model = build(name, kwargs)
    else:
        model = build(name, kwargs)
    lines = [f"{k} {tuple(v.shape)}" for k, v in model.state_dict().items()]
    out: dict[str, Any] = {
        "state_dict_sha256": hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest(),
        "state_dict_modules": _modules(model),
        "params": sum(p.numel() for p in model.parameters()),
        "loss_weights": dict(model.loss_weights),
        "class": type(model).__name__,
    }
    if run:
        x = torch.randn(2, 3, 35, 43, generator=torch.Generator().manual_seed(1))
        model.eval()
        with torch.no_grad():
            logits = model(x)
        out["eval"] = _checksum(logits)
        model.train()
        torch.manual_seed(2)  # dropout masks
        train_out = model(x)
        out["train"] = {k: _checksum(v.detach()) for k, v in train_out.items()}
    return out


def _modules(model: torch.nn.Module) -> dict[str, int]:
    """Number of state-dict entries under each two-level module prefix (``backbone.layer1``), to
    say where a state dict changed."""
    counts: dict[str, int] = {}
    for k in model.state_dict():
        prefix = ".".join(k.split(".")[:2])
        counts[prefix] = counts.get(prefix, 0) + 1
    return counts


def _checksum(t: torch.Tensor) -> list:
    t = t.double()
    return [list(t.shape), t.sum().item(), t.abs().sum().item(), (t * t).sum().item()]


def main() -> int:
    data = {case: snapshot(name, kw, run) for case, name, kw, run in CASES}
    FILE.parent.mkdir(parents=True, exist_ok=True)
    FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(data)} snapshots to {FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
