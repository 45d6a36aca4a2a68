"""What a benchmark measures: a model from segzoo's registry, torchvision or smp, described by
JSON-able fields so that a fresh worker process can build it again.

    Candidate("segzoo", "deeplabv3plus", {"backbone": "mobilenet_v2"})
    Candidate("torchvision", "fcn_resnet50")                       # weights=None, no download
    Candidate("smp", "Unet", {"encoder_name": "resnet34"}, patch={"head_kernel_size": 1})

Peers are built without pretrained weights (``weights=None`` / ``encoder_weights=None``): nothing
is downloaded. ``patch`` edits a peer after construction where one detail keeps it from matching
ours (see :mod:`segzoo.bench.peers`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from segzoo.errors import PeerUnavailable, SegzooError
from segzoo.export.deploy import main_output  # noqa: F401  (re-exported)

SOURCES = ("segzoo", "torchvision", "smp")


@dataclass(frozen=True)
class Candidate:
    """One model to build: ``source`` ("segzoo", "torchvision" or "smp"), its ``name`` there
    (registered model name, ``torchvision.models.segmentation`` function, smp class) and builder
    keyword arguments; ``variant`` "eager", "deploy" (segzoo's
    :func:`~segzoo.export.deploy.optimize_for_inference`) or "onnxruntime" (exported to ONNX, run
    by onnxruntime: :class:`~segzoo.bench.onnx_runtime.OrtRunner`)."""

    source: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    patch: dict[str, Any] = field(default_factory=dict)
    variant: str = "eager"

    @property
    def label(self) -> str:
        """Short display name: ``deeplabv3plus/mobilenet_v2``, ``torchvision fcn_resnet50``."""
        if self.source == "segzoo":
            text = f"{self.name}/{self.kwargs.get('backbone', 'default')}"
        elif self.source == "smp":
            text = f"smp {self.name}/{self.kwargs.get('encoder_name', 'resnet34')}"
        else:
            text = f"{self.source} {self.name}"
        return text + (f" [{self.variant}]" if self.variant != "eager" else "")

    def with_variant(self, variant: str) -> Candidate:
        return Candidate(self.source, self.name, dict(self.kwargs), dict(self.patch), variant)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Candidate:
        return cls(**data)

    def build(self, num_classes: int) -> nn.Module:
        """The model in eval mode (float32, CPU, randomly initialised)."""
        if self.source not in SOURCES:
            raise SegzooError(f"unknown model source {self.source!r}; use one of {', '.join(SOURCES)}")
        if self.source == "segzoo":
            import segzoo

            model = segzoo.build_model(self.name, num_classes=num_classes, **self.kwargs)
        elif self.source == "torchvision":
            from torchvision.models import detection, segmentation

            module = segmentation if hasattr(segmentation, self.name) else detection
            builder = getattr(module, self.name)
            model = builder(weights=None, weights_backbone=None, num_classes=num_classes, **self.kwargs)
        else:
            try:
                import segmentation_models_pytorch as smp
            except ImportError as exc:
                raise PeerUnavailable("segmentation_models_pytorch is not installed; "
                                      "pip install -e '.[bench]'") from exc
            model = getattr(smp, self.name)(encoder_weights=None, classes=num_classes, **self.kwargs)
        _apply_patch(model, self.patch)
        return model.eval()

    def build_meta(self, num_classes: int) -> nn.Module:
        """The model on the ``meta`` device (for counting FLOPs without memory or compute)."""
        with torch.device("meta"):
            return self.build(num_classes)


def _apply_patch(model: nn.Module, patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if key == "head_kernel_size":  # smp's SegmentationHead conv (3x3 by default)
            old = model.segmentation_head[0]
            model.segmentation_head[0] = nn.Conv2d(old.in_channels, old.out_channels, value,
                                                   padding=value // 2, device=old.weight.device)
        else:
            raise SegzooError(f"unknown candidate patch {key!r}")
