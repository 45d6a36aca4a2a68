"""``segzoo predict``: label PNGs, colour overlays (and COCO json for instance models) for image files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pycocotools.mask as mask_utils
import torch
from torch import nn
from torchvision import tv_tensors
from tqdm import tqdm

from segzoo import builders
from segzoo.config import Config
from segzoo.data import build_pipeline
from segzoo.data.intensity import GreyMapping
from segzoo.data.io import IMAGE_EXTENSIONS, read_image
from segzoo.errors import DataError, PredictionError, SegzooError
from segzoo.inference.checks import check_finite_output, check_input_size, model_task
from segzoo.inference.instances import rescale_instances
from segzoo.inference.modes import SemanticInferencer
from segzoo.metrics.cross_task import instances_to_semantic
from segzoo.metrics.instance import encode_masks, xyxy_to_xywh
from segzoo.metrics.keypoints import boxes_as_masks
from segzoo.models.layers import resize
from segzoo.visualize import draw_instances, overlay, save_label_png, save_rgb


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
    class_names: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 1,
    progress: bool = True,
) -> list[dict]:
    """Predict each image and write ``output/labels/<name>.png`` (palette PNG of class indices,
    at the image's own size) and ``output/overlays/<name>.png`` (semantic models: class colours;
    instance models: one colour per instance, its box and a "class score" caption, keypoint
    models' keypoints joined by the dataset's skeleton); for instance
    models also ``output/instances.json`` (see :func:`write_coco_predictions`).

    The config's val transforms (e.g. a resize) and normalisation are applied. Semantic models run
    in the ``eval:`` inference mode (whole/slide, TTA) and their logits are resized back to the
    original size before the argmax; instance models (``model.task == "instance"``) get a list of
    images, their boxes/masks are rescaled to the original size and pasted into the label map by
    descending score (``eval.score_threshold``). Consecutive images of equal (transformed) size are
    batched up to ``batch_size``. Returns one record per image. Two inputs with the same stem
    (``x.png``, ``x.jpg``) are written under their full names (see :func:`output_names`).

    Raises:
        PredictionError: after every other image was written, listing the images that could not
            be read or predicted (corrupt file, below the model's minimum size, non-finite output).
    """
    output = Path(output)
    split = cfg.data.val or cfg.data.train
    specs = split.transforms if split is not None else []
    pipeline = build_pipeline(specs, ignore_index=cfg.data.ignore_index, mean=cfg.data.mean, std=cfg.data.std)
    # grey images are mapped to 8 bits the way the dataset reads them (image_range, percentiles)
    mapping = GreyMapping.from_config(split.dataset.kwargs) if split is not None else None
    task = model_task(model)
    skeleton = keypoint_skeleton(cfg) if getattr(model, "num_keypoints", None) else None
    model.eval()
    inferencer = SemanticInferencer.from_config(model, cfg.eval) if task == "semantic" else None
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(palette))]
    coco: dict = {"images": [], "annotations": [],
                  "categories": [{"id": c, "name": names[c]} for c in range(1, len(names))]}
    records: list[dict] = []
    failures: list[tuple[Path, str]] = []
    pending: list[tuple[Path, torch.Tensor, torch.Tensor]] = []
    images = list(images)
    out_names = output_names(images)

    def flush() -> None:
        if not pending:
            return
        try:
            _predict_batch(pending)
        except (SegzooError, ValueError, RuntimeError) as exc:  # the rest of the folder goes on
            failures.extend((path, f"{type(exc).__name__}: {exc}") for path, _, _ in pending)
        pending.clear()

    def _predict_batch(batch: list[tuple[Path, torch.Tensor, torch.Tensor]]) -> None:
        x = torch.stack([t for _, _, t in batch]).to(device)
        what = ", ".join(str(p) for p, _, _ in batch)
        panels: list = []
        if task == "semantic":
            if inferencer.mode != "slide":
                check_input_size(model, x.shape[-2:], f"image {what} (after the val transforms)")
            logits = inferencer(x)
            check_finite_output(logits, what)
            outs = [resize(logits[i:i + 1], raw.shape[-2:]).argmax(1)[0].cpu() for i, (_, raw, _) in enumerate(batch)]
        else:
            outs = []
            for (path, raw, _), pred in zip(batch, model(list(x))):
                for key in ("boxes", "scores"):
                    check_finite_output(pred[key], str(path))
                pred = {k: v.cpu() for k, v in rescale_instances(pred, x.shape[-2:], raw.shape[-2:]).items()}
                outs.append(instances_to_semantic(boxes_as_masks(pred, tuple(raw.shape[-2:])), tuple(raw.shape[-2:]),
                                                  score_threshold=cfg.eval.score_threshold))
                _add_coco_image(coco, path, raw.shape[-2:], pred)
                panels.append(draw_instances(raw, pred, names, score_threshold=cfg.eval.score_threshold,
                                             skeleton=skeleton))
        for j, ((path, raw, _), labels) in enumerate(zip(batch, outs)):
            name = out_names[path]
            label_path = save_label_png(labels, palette, output / "labels" / f"{name}.png")
            # instance models: per-instance colours, boxes and "class score" captions
            shown = panels[j] if task == "instance" else overlay(raw, labels, palette)
            overlay_path = save_rgb(shown, output / "overlays" / f"{name}.png")
            records.append({"image": str(path), "label": str(label_path), "overlay": str(overlay_path)})

    for path in tqdm(images, desc="predict", disable=not progress, dynamic_ncols=True):
        try:
            raw = read_image(path, mapping)
            x = pipeline({"image": tv_tensors.Image(raw)})["image"].as_subclass(torch.Tensor)
        except (SegzooError, ValueError, OSError) as exc:
            failures.append((path, f"{type(exc).__name__}: {exc}"))
            continue
        if pending and (x.shape != pending[0][2].shape or len(pending) >= batch_size):
            flush()
        pending.append((path, raw, x))
    flush()
    if task == "instance":
        write_coco_predictions(coco, output / "instances.json")
    if failures:
        raise PredictionError(records, failures)
    return records


def output_names(paths: Sequence[Path]) -> dict[Path, str]:
    """Output file name (without ``.png``) per input image: its stem, or, where two inputs share
    a stem (``x.png`` and ``x.jpg``), its full name (``x.png``, ``x.jpg``), so no output
    overwrites another."""
    stems: dict[str, int] = {}
    for p in paths:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    return {p: p.stem if stems[p.stem] == 1 else p.name for p in paths}


def _add_coco_image(coco: dict, path: Path, size: Sequence[int], pred: dict) -> None:
    image_id = len(coco["images"]) + 1
    coco["images"].append({"id": image_id, "file_name": path.name, "height": int(size[0]), "width": int(size[1])})
    n = len(coco["annotations"])
    rles = encode_masks(pred["masks"]) if "masks" in pred else [None] * len(pred["scores"])
    for j, (box, label, score, rle) in enumerate(zip(xyxy_to_xywh(pred["boxes"]), pred["labels"].tolist(),
                                                     pred["scores"].tolist(), rles)):
        ann = {"id": n + j + 1, "image_id": image_id, "category_id": int(label), "bbox": box,
               "score": float(score), "iscrowd": 0, "area": float(box[2] * box[3])}
        if rle is not None:
            ann["segmentation"] = rle
            ann["area"] = float(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")}))
        if "keypoints" in pred:
            ann["keypoints"] = pred["keypoints"][j].reshape(-1).tolist()
        coco["annotations"].append(ann)


def keypoint_skeleton(cfg: Config) -> list[tuple[int, int]] | None:
    """The ``skeleton`` (keypoint index pairs) of the config's val (else train) dataset, to draw
    keypoint models' predictions; None when the dataset has none or cannot be built here."""
    split = cfg.data.val or cfg.data.train
    if split is None:
        return None
    try:
        ds = builders.dataset_from_split(cfg, split)
    except (SegzooError, OSError, ValueError, TypeError):
        return None  # the points are still drawn, unconnected
    return list(getattr(ds, "skeleton", None) or []) or None


def write_coco_predictions(coco: dict, path: Path) -> Path:
    """Write instance predictions as a COCO-format json: ``images`` (id, file_name, height, width),
    ``categories`` (label i -> class name), ``annotations`` (bbox [x, y, w, h], RLE
    ``segmentation``, ``score``, ``area``, keypoint models' flat ``keypoints``);
    ``pycocotools.coco.COCO(path)`` loads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco))
    return path
