"""Kernel launches and host syncs of one Mask R-CNN detection, phase by phase, segzoo against torchvision.

    python benchmarks/detector_ops.py --device cpu --out benchmarks/results/detector-ops   # ~30 s
    python benchmarks/detector_ops.py --device cuda --out $OUT                             # GPU check
    python benchmarks/detector_ops.py --device cpu --arch keypointrcnn                     # -> .../keypointrcnn/
    python benchmarks/detector_ops.py --device cpu --quick --out /tmp/x                    # dry run

At batch 1 on a GPU a detector's time goes to launching kernels and to waiting on host syncs
(:mod:`segzoo.bench.hostsync`), both counted here without timing anything, so the counts are the
same on a busy CPU as on an idle one. Models: segzoo's Mask R-CNN R50-FPN with torchvision's mask
paste and per-class NMS (``transform.mask_paste="loop"``, ``roi_heads.class_nms="torchvision"``),
with the batched paste, with the batched paste and grouped NMS (what ``"auto"`` picks on a GPU:
:mod:`segzoo.models.roi_heads.postprocess`), and torchvision's ``maskrcnn_resnet50_fpn``; random
weights, ``box_score_thresh=0`` (as ``segzoo bench`` times them: every class of every proposal is
a candidate, and 100 detections reach the mask head), 91 classes, one 800x1333 image. ``--arch keypointrcnn``: segzoo's Keypoint R-CNN R50-FPN (2 classes, 17
keypoints) with torchvision's and the grouped NMS, and torchvision's ``keypointrcnn_resnet50_fpn``.

Device matters in one place: torchvision's ``batched_nms`` runs one NMS over all boxes (classes
kept apart by coordinate offsets) up to 4,000 coordinates on the CPU and 100,000 on a GPU
(torchvision 0.29), and one NMS per class above; so the CPU counts can have more NMS calls than a
GPU would (the GPU check counts again on the GPU, in ``benchmarks/detector_postprocess.py``).

Writes ``detector_ops.json`` and ``detector_ops.md`` into ``--out``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import segzoo  # noqa: E402
from segzoo.bench.hostsync import count_detector, totals  # noqa: E402
from segzoo.bench.machine import machine_info  # noqa: E402


def variants(arch: str, quick: bool, size: tuple[int, int]) -> dict:
    """name -> (builder, mask_paste, class_nms) (None for torchvision's model)."""
    common = {"min_size": size[0], "max_size": size[1], "box_score_thresh": 0.0}
    small = {"backbone": "resnet18", "fpn_channels": 32, "box_head_dim": 64} if quick else {}
    if arch == "keypointrcnn":
        kw = {"num_classes": 2, "num_keypoints": 17, **small,
              **({"keypoint_head_dim": 16, "keypoint_head_convs": 2} if quick else {})}

        def ours():
            return segzoo.build_model("keypointrcnn", **kw, **common)

        def theirs():
            return torchvision.models.detection.keypointrcnn_resnet50_fpn(
                weights=None, weights_backbone=None, num_classes=2, num_keypoints=17, **common)

        return {"segzoo, torchvision's NMS": (ours, None, "torchvision"),
                "segzoo, grouped NMS (GPU default)": (ours, None, "grouped"),
                "torchvision keypointrcnn_resnet50_fpn": (theirs, None, None)}
    kw = {"num_classes": 4, "mask_head_dim": 16, **small} if quick else {"num_classes": 91}

    def ours():
        return segzoo.build_model("maskrcnn", **kw, **common)

    def theirs():
        return torchvision.models.detection.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=kw["num_classes"], **common)

    return {"segzoo, torchvision's paste and NMS": (ours, "loop", "torchvision"),
            "segzoo, batched paste": (ours, "batched", "torchvision"),
            "segzoo, batched paste + grouped NMS (GPU default)": (ours, "batched", "grouped"),
            "torchvision maskrcnn_resnet50_fpn": (theirs, None, None)}


def run(arch: str, device: torch.device, size: tuple[int, int], quick: bool) -> list[dict]:
    rows = []
    image = [torch.rand(3, *size, generator=torch.Generator().manual_seed(0)).to(device)]
    for name, (build, paste, class_nms) in variants(arch, quick, size).items():
        torch.manual_seed(0)
        model = build().to(device).eval()
        if paste is not None:
            model.transform.mask_paste = paste
        if class_nms is not None:
            model.roi_heads.class_nms = class_nms
        with torch.inference_mode():
            detections = len(model(image)[0]["boxes"])  # a first call: the poolers set their scales
        counts = count_detector(model, image)
        total = totals(counts)
        rows.append({"model": name, "detections": detections, "operators": total.operators,
                     "host_syncs": total.total_syncs, "phases": {k: v.to_dict() for k, v in counts.items()}})
        print(f"{name}: {detections} detections, {total.operators} operators, {total.total_syncs} host syncs",
              flush=True)
    return rows


def markdown(res: dict) -> str:
    m, rows = res["machine"], res["rows"]
    where = m.get("gpu") or m.get("cpu")
    title = {"maskrcnn": "Mask R-CNN", "keypointrcnn": "Keypoint R-CNN"}[res.get("arch", "maskrcnn")]
    lines = [f"# {title}: operators and host syncs of one detection, by phase", "",
             f"* Machine: {where}; device {res['device']}; torch {m['torch']}, torchvision {m['torchvision']}; "
             f"{m['date']}; segzoo {m.get('segzoo_commit')}.",
             f"* Command: `{res['command']}`",
             f"* One {res['size'][0]}x{res['size'][1]} image, random weights, `box_score_thresh=0`. Operators: "
             "non-view ATen operators (each one kernel launch or more on a GPU); host syncs: operators "
             "that read device data back to the host on a GPU (`segzoo.bench.hostsync`). Counts, not "
             "timings: they do not depend on the machine's load.", "",
             "| model | detections | operators | host syncs |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['detections']} | {r['operators']} | {r['host_syncs']} |")
    phases = list(dict.fromkeys(p for r in rows for p in r["phases"]))
    lines += ["", "By phase, operators / host syncs (the syncs' operators in brackets):", "",
              "| phase | " + " | ".join(r["model"] for r in rows) + " |", "|---|" + "---:|" * len(rows)]
    for p in phases:
        cells = []
        for r in rows:
            c = r["phases"].get(p)
            by = ", ".join(f"{k} {v}" for k, v in sorted(c["syncs_by_op"].items(), key=lambda kv: -kv[1])) if c else ""
            cells.append(f"{c['operators']} / {c['host_syncs']}" + (f" ({by})" if by else "") if c else "-")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", choices=["maskrcnn", "keypointrcnn"], default="maskrcnn")
    p.add_argument("--size", type=int, nargs=2, default=[800, 1333], metavar=("H", "W"))
    p.add_argument("--quick", action="store_true", help="tiny ResNet-18 models at 64x96 (a dry run)")
    p.add_argument("--out", default="benchmarks/results/detector-ops")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    size = (64, 96) if args.quick else (args.size[0], args.size[1])
    torch.set_flush_denormal(True)
    res = {"machine": machine_info(args.device), "device": str(device), "size": list(size),
           "command": "python " + " ".join(sys.argv), "arch": args.arch, "rows": run(args.arch, device, size, args.quick)}
    out = Path(args.out) / args.arch if args.arch != "maskrcnn" else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "detector_ops.json").write_text(json.dumps(res, indent=2) + "\n")
    md = markdown(res)
    (out / "detector_ops.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
