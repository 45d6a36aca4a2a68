"""ONNX export check of the instance models on real images (docs/deployment.md, "Mask R-CNN").

Each case builds a model, exports it with ``segzoo.export.export_onnx`` (one image of any size in)
at one size and compares onnxruntime with PyTorch, image by image, on coco128 / coco_mini images at
their own sizes (every one differs from the export size): matched detections, the largest box
difference, the smallest mask IoU, the largest keypoint difference
(:func:`segzoo.export.detection.verify_detection`). Cases:

* ``maskrcnn_mobilenetv2_coco128``: ``configs/maskrcnn/maskrcnn_mobilenetv2_coco128-320.yaml``
  (ImageNet MobileNetV2 from the shared data, **heads with random weights**: no trained Mask R-CNN
  checkpoint exists here) with ``box_score_thresh`` lowered to 0 so that every image has its 100
  highest-scored detections (random heads score about 1/81): every returned detection is compared.
* ``maskrcnn_mobilenetv2_coco128_empty``: the same model with the config's score threshold (0.05):
  no detection on any image, so the outputs must be empty tensors of the right shapes.
* ``keypointrcnn_mobilenetv2_coco_mini`` (when the checkpoint exists): a trained Keypoint R-CNN
  (``work_dirs/keypoints/coco_mini_mbv2_overfit/checkpoints/last.pt``) on the coco_mini train
  images with persons (the split it is trained on), every returned detection compared.
* ``maskrcnn_options_tiny``: every ``maskrcnn`` option (C4, RoIPool, MLP and softmax mask heads,
  class-agnostic masks, the joint keypoint head) on a tiny random ResNet-18 model, generated images
  at 97x131, 121x77 and 33x200 (``options/maskrcnn_options_tiny.json``).

Results: ``benchmarks/results/export/detection/<case>.json`` (per image rows, versions, machine) and
``benchmarks/results/export/detection/README.md`` (table). The per-image seconds in the JSON are
wall times of one run each on whatever else the machine runs: a correctness check, not a benchmark.

    python benchmarks/export_check_detection.py [--cases ...] [--images 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "export" / "detection"
MASKRCNN_CFG = REPO / "configs" / "maskrcnn" / "maskrcnn_mobilenetv2_coco128-320.yaml"
KEYPOINT_CFG = REPO / "configs" / "keypointrcnn" / "keypointrcnn_mobilenetv2_coco_mini-overfit.yaml"
KEYPOINT_CKPT = REPO / "work_dirs" / "keypoints" / "coco_mini_mbv2_overfit" / "checkpoints" / "last.pt"


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or platform.machine())
    return f"{cpu}, {torch.get_num_threads()} torch threads"


def read_images(folder: Path, names: list[str]) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_image

    return [decode_image(str(folder / n), mode=ImageReadMode.RGB).float() / 255 for n in names]


def coco_val_images(root: str, count: int, *, skip: int = 0) -> tuple[list[str], Path]:
    from segzoo.paths import resolve_data_path

    folder = resolve_data_path(root)
    images = sorted(p.name for p in folder.glob("*.jpg"))
    return images[skip:skip + count], folder


def person_images(root: str, split: str, count: int) -> tuple[list[str], Path]:
    """The first ``count`` images (by name) with at least one person with labelled keypoints."""
    from segzoo.paths import resolve_data_path

    data = json.loads((resolve_data_path(root) / "annotations" / f"person_keypoints_{split}.json").read_text())
    ids = {a["image_id"] for a in data["annotations"] if a.get("num_keypoints", 0) > 0}
    names = sorted(im["file_name"] for im in data["images"] if im["id"] in ids)
    return names[:count], resolve_data_path(root) / split


def maskrcnn_model(score_thresh: float):
    import segzoo
    from segzoo.config import load_config

    cfg = load_config(MASKRCNN_CFG)
    torch.manual_seed(0)
    kwargs = {**cfg.model.kwargs, "num_classes": 81, "box_score_thresh": score_thresh}
    return segzoo.build_model(cfg.model.name, **kwargs).eval(), kwargs


def keypoint_model():
    from segzoo.checkpoint import load_trained_model
    from segzoo.config import load_config

    cfg = load_config(KEYPOINT_CFG)
    model, _ = load_trained_model(cfg, KEYPOINT_CKPT, "cpu")
    return model.eval(), dict(cfg.model.kwargs)


def case_setup(case: str, count: int):
    """(model, builder kwargs, images, image names, matching score threshold, note)."""
    if case.startswith("maskrcnn"):
        empty = case.endswith("_empty")
        model, kwargs = maskrcnn_model(0.05 if empty else 0.0)
        names, folder = coco_val_images("coco128/train2017", count, skip=96)  # the config's val split
        note = ("ImageNet MobileNetV2, random heads, config's score threshold 0.05: no detections" if empty else
                "ImageNet MobileNetV2, random heads (no trained checkpoint), box_score_thresh lowered to 0: "
                "the 100 highest-scored detections per image compared")
        return model, kwargs, read_images(folder, names), names, 0.0, note
    if not KEYPOINT_CKPT.is_file():
        raise FileNotFoundError(f"{KEYPOINT_CKPT} (train configs/keypointrcnn/... first)")
    model, kwargs = keypoint_model()
    names, folder = person_images("coco_mini", "train2017", count)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(KEYPOINT_CKPT.stat().st_mtime))
    return model, kwargs, read_images(folder, names), names, 0.0, (
        f"checkpoint {KEYPOINT_CKPT.relative_to(REPO)} of {stamp} (the overfit run, in training), on images "
        "with persons of the split it trains on; every returned detection (score >= 0.05) compared")


#: maskrcnn options checked on a tiny random ResNet-18 model (``options`` case)
OPTIONS = {"fpn": {}, "c4": {"variant": "c4", "anchor_sizes": [8, 16, 32], "rpn_post_nms_top_n_test": 16},
           "roipool": {"roi_op": "pool"}, "mlp-mask": {"mask_head": "mlp"}, "softmax-mask": {"mask_loss": "softmax"},
           "class-agnostic-mask": {"class_agnostic_mask": True},
           "mask+keypoint": {"keypoint_head": True, "num_keypoints": 5}}
TINY = {"min_size": 64, "max_size": 96, "fpn_channels": 32, "box_head_dim": 64, "mask_head_dim": 32,
        "anchor_sizes": [8, 16, 32, 64, 128], "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50,
        "box_detections_per_img": 20, "box_score_thresh": 0.3}


def check_options(out: Path) -> dict:
    """Every maskrcnn option exported from a tiny random model (classifier scaled so scores spread
    over 0..1) and verified on generated images at 97x131, 121x77 and 33x200 (detections >= 0.5)."""
    import segzoo
    from segzoo.export.detection import export_detection

    record = {"case": "maskrcnn_options_tiny", "note": "random ResNet-18 Mask R-CNN, min_size 64, per option",
              "torch": torch.__version__, "machine": machine(), "options": {}}
    t0 = time.perf_counter()
    for name, kw in OPTIONS.items():
        torch.manual_seed(0)
        model = segzoo.build_model("maskrcnn", num_classes=4, backbone="resnet18", **{**TINY, **kw}).eval()
        with torch.no_grad():
            model.roi_heads.box_predictor.cls_score.weight.mul_(20)
        t = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                r = export_detection(model, Path(tmp) / "m.onnx", (64, 80), sizes=[(97, 131), (121, 77), (33, 200)])
            record["options"][name] = {"kwargs": kw, "status": "ok", "outputs": list(r["outputs"]), "rows": r["rows"]}
        except Exception as exc:
            record["options"][name] = {"kwargs": kw, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]}
        record["options"][name]["seconds"] = round(time.perf_counter() - t, 1)
        print(f"  {name:<22} {record['options'][name]['status']}", flush=True)
    record["status"] = "ok" if all(o["status"] == "ok" for o in record["options"].values()) else "failed"
    record["seconds"] = round(time.perf_counter() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "options" / "maskrcnn_options_tiny.json").parent.mkdir(exist_ok=True)
    (out / "options" / "maskrcnn_options_tiny.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def options_table(folder: Path = RESULTS) -> str:
    path = folder / "options" / "maskrcnn_options_tiny.json"
    if not path.is_file():
        return ""
    lines = ["| maskrcnn option | status | detections >= 0.5 at 97x131 / 121x77 / 33x200 | max box diff px | "
             "min mask IoU | max keypoint diff px |", "|---|---|---|---|---|---|"]
    for name, o in json.loads(path.read_text())["options"].items():
        rows = o.get("rows", [])
        if not rows:
            lines.append(f"| {name} | {o['status']} | {o.get('error', '')[:150]} | | | |")
            continue
        lines.append(f"| {name} | {o['status']} | {' / '.join(str(x['detections']) for x in rows)} | "
                     f"{max(x['box_diff'] for x in rows):.1e} | {min(x['mask_iou_decided'] for x in rows):.4f} | "
                     + (f"{max(x['keypoint_diff'] for x in rows):.1e} |" if "keypoints" in o["outputs"] else "- |"))
    return "\n".join(lines)


def check(case: str, count: int, out: Path) -> dict:
    import onnx
    import onnxruntime

    from segzoo.export import export_onnx

    model, kwargs, images, names, thresh, note = case_setup(case, count)
    record = {"case": case, "note": note, "kwargs": {k: v for k, v in kwargs.items() if k != "weights_backbone"},
              "score_threshold": thresh, "images": names,
              "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
              "machine": machine()}
    t = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.onnx"
            result = export_onnx(model, path, (320, 427), verify=False)
            record["export_seconds"] = round(time.perf_counter() - t, 1)
            record["onnx_mb"] = round(path.stat().st_size / 2**20, 1)
            record["outputs"] = list(result["outputs"])
            from segzoo.export.detection import verify_detection

            try:
                rows = verify_detection(model, path, images, score_threshold=thresh)
                record["status"] = "ok"
            except Exception as exc:  # keep the per-image numbers of a failed check too
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
                rows = verify_detection(model, path, images, score_threshold=thresh, box_tol=float("inf"),
                                        min_mask_iou=0.0, keypoint_tol=float("inf"))
        record["rows"] = [{"image": n, **r} for n, r in zip(names, rows)]
    except Exception as exc:  # recorded, the next case goes on
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
    record["seconds"] = round(time.perf_counter() - t, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{case}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def table(folder: Path = RESULTS) -> str:
    """Markdown table of the recorded results."""
    lines = ["| case | status | images (sizes) | detections compared (>= thr) | unmatched | max box diff px | "
             "min mask IoU (undecided px excluded) | max mask prob diff | max keypoint diff px | "
             "ONNX MB | export s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        rows = r.get("rows", [])
        if not rows:
            lines.append(f"| {r['case']} | {r['status']} | {r.get('error', '')[:150]} | | | | | | | | |")
            continue
        sizes = ", ".join(f"{h}x{w}" for h, w in sorted({tuple(x['size']) for x in rows}))
        masks = "masks" in r.get("outputs", [])
        lines.append(
            f"| {r['case']} | {r['status']} | {len(rows)} ({sizes}) | {sum(x['detections'] for x in rows)} "
            f"(>= {r['score_threshold']}) | {sum(x['unmatched_ref'] + x['unmatched_got'] for x in rows)} | "
            f"{max(x['box_diff'] for x in rows):.1e} | "
            + (f"{min(x['mask_iou'] for x in rows):.4f} ({min(x['mask_iou_decided'] for x in rows):.4f}) | "
               f"{max(x['mask_diff'] for x in rows):.1e} | " if masks else "- | - | ")
            + (f"{max(x['keypoint_diff'] for x in rows):.1e} | " if "keypoints" in r.get("outputs", []) else "- | ")
            + f"{r.get('onnx_mb', '')} | {r.get('export_seconds', '')} |")
    return "\n".join(lines)


CASES = ["maskrcnn_mobilenetv2_coco128", "maskrcnn_mobilenetv2_coco128_empty", "keypointrcnn_mobilenetv2_coco_mini",
         "maskrcnn_options_tiny"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    p.add_argument("--images", type=int, default=8, help="images per case")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--table", action="store_true", help="only print the Markdown table of the results")
    args = p.parse_args(argv)
    if not args.table:
        for case in args.cases:
            r = check_options(args.out) if case == "maskrcnn_options_tiny" else check(case, args.images, args.out)
            print(f"{case:<38} {r['status']:<7} {r['seconds']:>7.1f}s {r.get('error', '')[:300]}", flush=True)
    text = table(args.out) + "\n\n" + options_table(args.out)
    if not args.table:
        (args.out / "README.md").write_text(
            "# ONNX export of the instance models on real images\n\n"
            "`python benchmarks/export_check_detection.py` (see its docstring for the cases); "
            f"machine: {machine()}.\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
