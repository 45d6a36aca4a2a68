"""Mask R-CNN's per-detection postprocessing on a GPU: mask pasting and per-class NMS, alone and in
the whole detector, torchvision's way against segzoo's.

    python benchmarks/detector_postprocess.py --device cuda --out $OUT            # on a GPU (~25 s)
    python benchmarks/detector_postprocess.py --device cpu --quick --out /tmp/x   # dry run, seconds

1. ``paste``: N (default 100, Mask R-CNN's detections per image) random 28x28 masks with boxes
   clipped to an 800x1333 image, pasted by torchvision's ``paste_masks_in_image`` (one mask at a
   time) and by :func:`segzoo.models.detectors.paste.paste_masks` (all at once).
2. ``nms``: the per-class NMS of a 91-class detector with ``box_score_thresh=0``: 1,000 proposals
   x 90 classes = 90,000 candidate boxes, by torchvision's ``batched_nms`` (one NMS per class at
   this size) and by :func:`segzoo.models.roi_heads.postprocess.grouped_batched_nms` at several
   group sizes (boxes per NMS call): the data to pick the default group size on a GPU.
3. ``model`` (``--model``, default on CUDA): the registered Mask R-CNN R50-FPN (random weights,
   ``box_score_thresh=0``, 100 detections, as ``segzoo bench`` times it) at batch 1, 800x1333, eval,
   with torchvision's paste and NMS, with the batched paste, and with the batched paste and the
   grouped NMS (segzoo's default on a GPU), each with its operator and host-sync counts
   (:mod:`segzoo.bench.hostsync`) and the same detections checked; then torch.profiler's top
   operators of one run of the last, where the rest of the time goes.

Every case: the variants interleaved in rotated order, median of ``--repeats`` after ``--warmup``.
Writes ``detector_postprocess.json`` and ``detector_postprocess.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import batched_nms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import segzoo  # noqa: E402
from segzoo.bench.hostsync import count_detector, totals  # noqa: E402
from segzoo.bench.machine import machine_info  # noqa: E402
from segzoo.bench.timing import profile_table, run_interleaved  # noqa: E402
from segzoo.models.detectors.paste import paste_masks  # noqa: E402
from segzoo.models.roi_heads.postprocess import grouped_batched_nms  # noqa: E402


def median_ms(fns: dict, warmup: int, repeats: int, device: torch.device) -> dict:
    """Median ms per call of each callable, the calls interleaved in rotated order every round
    (:func:`segzoo.bench.timing.run_interleaved`)."""
    times = run_interleaved(list(fns.values()), warmup=warmup, repeats=repeats, device=device)
    return {k: statistics.median(t) * 1e3 for k, t in zip(fns, times)}


def paste_case(n: int, size: tuple[int, int], device: torch.device, warmup: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    h, w = size
    masks = torch.rand(n, 1, 28, 28, generator=g)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.9, h * 0.9])
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3]) + 1], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    masks, boxes = masks.to(device), boxes.to(device)
    diff = (paste_masks(masks, boxes, size) - paste_masks_in_image(masks, boxes, size)).abs().max().item()
    ms = median_ms({"torchvision paste_masks_in_image (loop)": lambda: paste_masks_in_image(masks, boxes, size),
                    "segzoo paste_masks (batched)": lambda: paste_masks(masks, boxes, size)},
                   warmup, repeats, device)
    return {"case": f"paste {n} masks into {h}x{w}", "variants": {k: {"ms": v} for k, v in ms.items()},
            "check": f"max abs diff {diff:.1e}", "ok": diff <= 1e-5}


def nms_case(proposals: int, classes: int, groups: list[int], size: tuple[int, int], device: torch.device,
             warmup: int, repeats: int) -> dict:
    """Candidates as a detector's second stage makes them: every proposal regressed once per class
    (jittered copies of it), softmax scores over the classes, all kept (``box_score_thresh=0``)."""
    g = torch.Generator().manual_seed(0)
    h, w = size
    xy = torch.rand(proposals, 1, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
    wh = 16 + torch.rand(proposals, 1, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
    jitter = torch.randn(proposals, classes, 4, generator=g) * 4
    boxes = (torch.cat([xy, xy + wh], -1) + jitter).reshape(-1, 4)
    boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                         boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], 1)
    scores = torch.randn(proposals, classes + 1, generator=g).softmax(-1)[:, 1:].reshape(-1)
    labels = torch.arange(1, classes + 1).repeat(proposals)
    boxes, scores, labels = boxes.to(device), scores.to(device), labels.to(device)
    fns = {"torchvision batched_nms": lambda: batched_nms(boxes, scores, labels, 0.5)}
    for n in groups:
        fns[f"segzoo grouped_batched_nms, {n} boxes per call"] = \
            lambda n=n: grouped_batched_nms(boxes, scores, labels, 0.5, max_group_boxes=n)
    ref = fns["torchvision batched_nms"]()
    same = all(torch.equal(scores[fn()], scores[ref]) for fn in fns.values())
    ms = median_ms(fns, warmup, repeats, device)
    return {"case": f"per-class NMS of {proposals} proposals x {classes} classes ({len(labels)} boxes)",
            "variants": {k: {"ms": v} for k, v in ms.items()},
            "check": f"{len(ref)} kept, same boxes by decreasing score: {same}", "ok": same}


MODEL_VARIANTS = {"torchvision paste + NMS": ("loop", "torchvision"),
                  "batched paste": ("batched", "torchvision"),
                  "batched paste + grouped NMS (segzoo's GPU default)": ("batched", "grouped")}


def model_case(size: tuple[int, int], device: torch.device, warmup: int, repeats: int, quick: bool) -> dict:
    torch.manual_seed(0)
    kw = {"backbone": "resnet18", "min_size": size[0], "max_size": size[1], "num_classes": 4,
          "fpn_channels": 32, "box_head_dim": 64, "mask_head_dim": 16} if quick else {}
    model = segzoo.build_model("maskrcnn", **{"num_classes": 91, **kw}, box_score_thresh=0.0).eval().to(device)
    image = [torch.rand(3, *size, device=device)]

    def set_modes(paste: str, class_nms: str) -> None:
        model.transform.mask_paste, model.roi_heads.class_nms = paste, class_nms

    def run(paste: str, class_nms: str):
        def fn():
            set_modes(paste, class_nms)
            with torch.inference_mode():
                return model(image)
        return fn

    fns = {name: run(*modes) for name, modes in MODEL_VARIANTS.items()}
    outs = {name: fn()[0] for name, fn in fns.items()}
    ref = outs["torchvision paste + NMS"]
    same_boxes = all(torch.equal(o["boxes"], ref["boxes"]) and torch.equal(o["labels"], ref["labels"])
                     for o in outs.values())
    diff = max((o["masks"] - ref["masks"]).abs().max().item() for o in outs.values())
    variants = {}
    for name, modes in MODEL_VARIANTS.items():
        set_modes(*modes)
        counts = totals(count_detector(model, image))
        variants[name] = {"operators": counts.operators, "host_syncs": counts.total_syncs}
    for name, ms in median_ms(fns, warmup, repeats, device).items():
        variants[name]["ms"] = ms
    label = "Mask R-CNN R18-FPN" if quick else "Mask R-CNN R50-FPN"
    return {"case": f"{label}, batch 1, {size[0]}x{size[1]}, {len(ref['boxes'])} detections",
            "variants": variants, "check": f"same boxes and labels: {same_boxes}; max mask diff {diff:.1e}",
            "ok": same_boxes and diff <= 1e-5, "profile": profile_table(list(fns.values())[-1], device)}


def markdown(res: dict) -> str:
    m = res["machine"]
    where = m.get("gpu") or m.get("cpu")
    lines = ["# Mask R-CNN postprocessing: torchvision's against segzoo's", "",
             f"* Machine: {where}; torch {m['torch']}, torchvision {m['torchvision']}; {m['date']}; "
             f"segzoo {m.get('segzoo_commit')}.",
             f"* Command: `{res['command']}`",
             f"* Median of {res['repeats']} interleaved runs after {res['warmup']} warm-up runs; operators and "
             "host syncs counted by `segzoo.bench.hostsync`."]
    for r in res["rows"]:
        first = next(iter(r["variants"].values()))["ms"]
        lines += ["", f"**{r['case']}** ({r['check']})", "",
                  "| variant | ms | speed-up | operators | host syncs |", "|---|---:|---:|---:|---:|"]
        for name, v in r["variants"].items():
            lines.append(f"| {name} | {v['ms']:.2f} | {first / v['ms']:.2f}x | {v.get('operators', '-')} | "
                         f"{v.get('host_syncs', '-')} |")
    for r in res["rows"]:
        if r.get("profile"):
            lines += ["", f"Profile of one run of the last variant ({r['case']}):", "",
                      "```", r["profile"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--num-masks", type=int, default=100)
    p.add_argument("--size", type=int, nargs=2, default=[800, 1333], metavar=("H", "W"))
    p.add_argument("--nms-groups", type=int, nargs="+", default=[2500, 5000, 10000, 25000],
                   help="group sizes (boxes per NMS call) of the nms case")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--model", action=argparse.BooleanOptionalAction, default=None,
                   help="also time the whole Mask R-CNN (default: on CUDA)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a CPU dry run)")
    p.add_argument("--out", default="benchmarks/results/detector-postprocess")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.set_flush_denormal(True)
    proposals, classes = 1000, 90
    if args.quick:
        args.num_masks, args.size, args.warmup, args.repeats = 10, [64, 96], 1, 2
        proposals, classes, args.nms_groups = 100, 10, [200, 500]
    size = (args.size[0], args.size[1])
    rows = [paste_case(args.num_masks, size, device, args.warmup, args.repeats),
            nms_case(proposals, classes, args.nms_groups, size, device, args.warmup, args.repeats)]
    if args.model if args.model is not None else (device.type == "cuda" or args.quick):
        rows.append(model_case(size, device, args.warmup, args.repeats, args.quick))
    res = {"machine": machine_info(args.device), "command": "python " + " ".join(sys.argv),
           "warmup": args.warmup, "repeats": args.repeats, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "detector_postprocess.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (out / "detector_postprocess.md").write_text(md)
    print(md)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
