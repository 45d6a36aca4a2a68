"""``segzoo predict``: label PNGs and colour overlays for image files."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torchvision import tv_tensors
from tqdm import tqdm

from segzoo.config import Config
from segzoo.data import build_pipeline
from segzoo.data.io import IMAGE_EXTENSIONS, read_image
from segzoo.data.palette import default_palette
from segzoo.engine import builder
from segzoo.engine.checkpoint import load_checkpoint
from segzoo.errors import DataError
from segzoo.models.layers import resize
from segzoo.visualize import overlay, save_label_png, save_rgb


def load_trained_model(cfg: Config, checkpoint: str | os.PathLike,
                       device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Build ``cfg.model`` and load a checkpoint's weights; returns (eval-mode model, meta).

    ``meta`` holds ``num_classes``, ``class_names`` and ``palette`` from the checkpoint, or, for a
    bare state dict, from the config's val (else train) dataset. A checkpoint of a run with
    ``train.ema`` gives its EMA weights (those the run evaluated); ``meta["weights"]`` says which.
    """
    state = load_checkpoint(checkpoint)
    meta = dict(state.get("meta") or {})
    if "num_classes" not in meta:
        split = cfg.data.val or cfg.data.train
        if split is None and "num_classes" not in cfg.model.kwargs:
            raise DataError("cannot tell the number of classes: the checkpoint has no meta and "
                            "the config no dataset or model.num_classes")
        if split is not None:
            ds = builder.dataset_from_split(cfg, split)
            meta.update(num_classes=ds.num_classes, class_names=list(ds.class_names),
                        palette=ds.colors())
        else:
            meta["num_classes"] = cfg.model.kwargs["num_classes"]
    cfg.model.kwargs["num_classes"] = meta["num_classes"]
    meta.setdefault("class_names", [str(i) for i in range(meta["num_classes"])])
    meta.setdefault("palette", default_palette(meta["num_classes"]))
    model = builder.model_from_config(cfg)
    ema = state.get("ema")
    model.load_state_dict(ema["module"] if ema else state["model"])
    meta["weights"] = "ema" if ema else "model"
    return model.to(device).eval(), meta


def find_images(path: str | os.PathLike) -> list[Path]:
    """An image file, or the image files of a folder (sorted, not recursive)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
        return files
    raise DataError(f"input {path} does not exist")


@torch.inference_mode()
def predict_images(
    model: nn.Module,
    cfg: Config,
    images: Iterable[Path],
    output: str | os.PathLike,
    *,
    palette: list,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> list[dict]:
    """Predict each image and write ``output/labels/<name>.png`` (palette PNG of class indices,
    at the image's own size) and ``output/overlays/<name>.png``.

    The config's val transforms (e.g. a resize) and normalisation are applied; logits are resized
    back to the original size before the argmax. Returns one record per image.
    """
    output = Path(output)
    split = cfg.data.val or cfg.data.train
    specs = split.transforms if split is not None else []
    pipeline = build_pipeline(specs, ignore_index=cfg.data.ignore_index, mean=cfg.data.mean, std=cfg.data.std)
    records = []
    for path in tqdm(list(images), desc="predict", disable=not progress, dynamic_ncols=True):
        raw = read_image(path)
        x = pipeline({"image": tv_tensors.Image(raw)})["image"].as_subclass(torch.Tensor)
        logits = model(x.unsqueeze(0).to(device))
        labels = resize(logits, raw.shape[-2:]).argmax(1)[0].cpu()
        label_path = save_label_png(labels, palette, output / "labels" / f"{path.stem}.png")
        overlay_path = save_rgb(overlay(raw, labels, palette), output / "overlays" / f"{path.stem}.png")
        records.append({"image": str(path), "label": str(label_path), "overlay": str(overlay_path)})
    return records
