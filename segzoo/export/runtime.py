"""Running an exported ONNX model in segzoo's inference code (``segzoo predict --backend onnxruntime``).

:class:`OnnxRuntimeModel` wraps an onnxruntime session as an eval-mode semantic model (tensor in,
tensor out), so prediction (val transforms, whole/slide inference, resizing back, argmax, label
PNGs and overlays) is the very code the PyTorch path runs; only the network runs in onnxruntime.
:class:`OnnxRuntimeDetector` does the same for an exported Mask R-CNN / Keypoint R-CNN (a list of
images in, torchvision's list of detection dicts out); :func:`load_onnx_model` picks the one the
file needs.
The class names, palette and normalisation travel in the ONNX file's metadata (written by
``segzoo export``), else come from the config's dataset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from segzoo.errors import ExportError
from segzoo.export.onnx import onnxruntime_session, require_module

#: metadata_props keys written by :func:`write_metadata`.
META_KEYS = ("num_classes", "class_names", "palette", "min_input_size", "mean", "std", "model")


def write_metadata(path: str | os.PathLike, meta: dict) -> None:
    """Store ``meta`` (JSON-serialisable values under :data:`META_KEYS`) in the ONNX file's
    ``metadata_props`` as ``segzoo.<key>`` = JSON text."""
    onnx = require_module("onnx")
    model = onnx.load(str(path))
    for key in META_KEYS:
        if key in meta:
            entry = model.metadata_props.add()
            entry.key, entry.value = f"segzoo.{key}", json.dumps(meta[key])
    onnx.save(model, str(path))


def read_metadata(session) -> dict:
    """The ``segzoo.*`` metadata of an onnxruntime session's model (empty if exported elsewhere)."""
    props = session.get_modelmeta().custom_metadata_map
    return {k[len("segzoo."):]: json.loads(v) for k, v in props.items() if k.startswith("segzoo.")}


class OnnxRuntimeModel(nn.Module):
    """An exported semantic model run by onnxruntime on the CPU, usable where segzoo expects an
    eval-mode semantic model: ``images`` (N, 3, H, W) float tensor -> logits (N, K, H, W) float32
    tensor on the input's device.

    Attributes:
        task: ``"semantic"``.
        min_input_size: from the file's metadata (0 when absent).
        meta: the file's ``segzoo.*`` metadata.

    Raises:
        ExportError: the file is missing, not a segzoo semantic export (no ``images`` input or
            ``logits`` output), or onnxruntime is not installed.
    """

    task = "semantic"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise ExportError(f"ONNX model {path} does not exist (write one with segzoo export)")
        self.path = path
        self.session = onnxruntime_session(path)
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != ["images"] or "logits" not in outputs:
            raise ExportError(f"{path}: not a segzoo semantic export (inputs {inputs}, outputs {outputs}; "
                              "expected images -> logits)")
        self.meta = read_metadata(self.session)
        self.min_input_size = int(self.meta.get("min_input_size", 0))
        self.eval()

    def train(self, mode: bool = True) -> OnnxRuntimeModel:
        if mode:
            raise ExportError("an ONNX model runs in eval mode only")
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        logits = self.session.run(["logits"], {"images": x})[0]
        return torch.from_numpy(np.ascontiguousarray(logits)).to(images.device)


class OnnxRuntimeDetector(nn.Module):
    """An exported instance model (:mod:`segzoo.export.detection`: one ``image`` in; ``boxes``,
    ``labels``, ``scores``, ``masks`` and/or ``keypoints``, ``keypoints_scores`` out) run by
    onnxruntime on the CPU, usable where segzoo expects an eval-mode Mask R-CNN / Keypoint R-CNN:
    ``model(images)`` with a list of (3, H_i, W_i) float images in 0..1 (or an (N, 3, H, W) tensor)
    returns per image ``{"boxes": (N, 4) float32 XYXY in the image's pixels, "labels": (N,) int64,
    "scores": (N,) float32, "masks": (N, 1, H, W) float32 probabilities, ...}`` on the input's
    device, as the PyTorch model's eval output. Images run one at a time (the graph takes one).

    Attributes:
        task: ``"instance"``.
        outputs: the graph's output names.
        num_keypoints: K when the graph predicts keypoints (else absent).
        meta: the file's ``segzoo.*`` metadata.

    Raises:
        ExportError: the file is missing or not a segzoo instance export, or onnxruntime is missing.
    """

    task = "instance"
    normalizes_input = True

    def __init__(self, path: str | os.PathLike, session=None) -> None:
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise ExportError(f"ONNX model {path} does not exist (write one with segzoo export)")
        self.path = path
        self.session = session if session is not None else onnxruntime_session(path)
        inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = tuple(o.name for o in self.session.get_outputs())
        if inputs != ["image"] or not {"boxes", "labels", "scores"} <= set(self.outputs):
            raise ExportError(f"{path}: not a segzoo instance export (inputs {inputs}, outputs "
                              f"{list(self.outputs)}; expected image -> boxes, labels, scores, ...)")
        if "keypoints" in self.outputs:
            self.num_keypoints = int(self.session.get_outputs()[self.outputs.index("keypoints")].shape[1])
        self.meta = read_metadata(self.session)
        self.min_input_size = int(self.meta.get("min_input_size", 1))
        self.eval()

    def train(self, mode: bool = True) -> OnnxRuntimeDetector:
        if mode:
            raise ExportError("an ONNX model runs in eval mode only")
        return super().train(False)

    def forward(self, images: list[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        results = []
        for image in images:
            x = image.detach().to("cpu", torch.float32).contiguous().numpy()
            outs = self.session.run(list(self.outputs), {"image": x})
            results.append({k: torch.from_numpy(np.ascontiguousarray(v)).to(image.device)
                            for k, v in zip(self.outputs, outs)})
        return results


def open_onnx_model(path: str | os.PathLike) -> OnnxRuntimeModel | OnnxRuntimeDetector:
    """The runner for an exported file: :class:`OnnxRuntimeDetector` for an instance export (input
    ``image``), else :class:`OnnxRuntimeModel`."""
    if Path(path).is_file():
        session = onnxruntime_session(path)
        if [i.name for i in session.get_inputs()] == ["image"]:
            return OnnxRuntimeDetector(path, session)
    return OnnxRuntimeModel(path)


def load_onnx_model(cfg, path: str | os.PathLike) -> tuple[OnnxRuntimeModel | OnnxRuntimeDetector, dict]:
    """(model, meta) for ``segzoo predict --backend onnxruntime``: ``meta`` has ``num_classes``,
    ``class_names`` and ``palette`` from the file's metadata, else from the config's val (else
    train) dataset, as :func:`segzoo.checkpoint.load_trained_model` does for a bare state dict.

    Raises:
        ExportError: see :class:`OnnxRuntimeModel`; also a file whose mean/std differ from the
            config's (the images would be normalised differently from the export).
    """
    model = open_onnx_model(path)
    meta = {k: model.meta[k] for k in ("num_classes", "class_names", "palette") if k in model.meta}
    for key in ("mean", "std"):
        if key in model.meta and cfg is not None and list(map(float, getattr(cfg.data, key))) != model.meta[key]:
            raise ExportError(f"{path} was exported with data.{key}={model.meta[key]}, the config has "
                              f"{list(getattr(cfg.data, key))}: use the config the model was trained with")
    if "num_classes" not in meta:
        from segzoo import builders
        from segzoo.data.palette import default_palette

        split = cfg.data.val or cfg.data.train
        if split is None:
            raise ExportError(f"{path} has no class metadata and the config no dataset to take it from")
        ds = builders.dataset_from_split(cfg, split)
        meta = {"num_classes": ds.num_classes, "class_names": list(ds.class_names), "palette": ds.colors()}
        meta.setdefault("palette", default_palette(meta["num_classes"]))
    return model, meta
