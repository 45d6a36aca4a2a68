"""Mask pasting, torchvision's per-mask loop against segzoo's batched paste, alone and in Mask R-CNN.

    python benchmarks/mask_paste.py --device cuda --out $OUT            # on a GPU (~20 s)
    python benchmarks/mask_paste.py --device cpu --quick --out /tmp/x   # dry run, seconds

1. ``paste``: N (default 100, Mask R-CNN's detections per image) random 28x28 masks with boxes
   clipped to an 800x1333 image, pasted by torchvision's ``paste_masks_in_image`` and by
   :func:`segzoo.models.detectors.paste.paste_masks`, interleaved, median over ``--repeats``.
2. ``model`` (``--model``, default on CUDA): the registered Mask R-CNN R50-FPN (random weights,
   ``box_score_thresh=0`` so that the mask head pastes all 100 detections, as ``segzoo bench``
   times it) at batch 1, 800x1333, eval, with ``transform.mask_paste`` ``"loop"`` and
   ``"batched"`` interleaved: the share of the paste in a whole detection; then torch.profiler's
   top operators of one batched run, where the rest of the time goes.

Writes ``mask_paste.json`` and ``mask_paste.md`` into ``--out``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import segzoo  # noqa: E402
from segzoo.bench.machine import machine_info, synchronize  # noqa: E402
from segzoo.bench.timing import run_interleaved  # noqa: E402
from segzoo.models.detectors.paste import paste_masks  # noqa: E402


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
    ms = median_ms({"loop": lambda: paste_masks_in_image(masks, boxes, size),
                      "batched": lambda: paste_masks(masks, boxes, size)}, warmup, repeats, device)
    return {"case": f"paste {n} masks into {h}x{w}", "loop_ms": ms["loop"], "batched_ms": ms["batched"],
            "max_abs_diff": diff}


def model_case(size: tuple[int, int], device: torch.device, warmup: int, repeats: int, quick: bool) -> dict:
    torch.manual_seed(0)
    kw = {"backbone": "resnet18", "min_size": size[0], "max_size": size[1], "num_classes": 4,
          "fpn_channels": 32, "box_head_dim": 64, "mask_head_dim": 16} if quick else {}
    model = segzoo.build_model("maskrcnn", **{"num_classes": 91, **kw}, box_score_thresh=0.0).eval().to(device)
    image = [torch.rand(3, *size, device=device)]

    def run(mode: str):
        def fn():
            model.transform.mask_paste = mode
            with torch.inference_mode():
                return model(image)
        return fn

    outs = {m: run(m)() for m in ("loop", "batched")}
    diff = (outs["loop"][0]["masks"] - outs["batched"][0]["masks"]).abs().max().item()
    ms = median_ms({"loop": run("loop"), "batched": run("batched")}, warmup, repeats, device)
    name = "Mask R-CNN R18-FPN" if quick else "Mask R-CNN R50-FPN"
    return {"case": f"{name}, batch 1, {size[0]}x{size[1]}, {len(outs['loop'][0]['boxes'])} detections",
            "loop_ms": ms["loop"], "batched_ms": ms["batched"], "max_abs_diff": diff,
            "profile": profile(run("batched"), device)}


def profile(fn, device: torch.device, top: int = 15) -> str:
    """torch.profiler's table of one call of ``fn`` (after the timed runs): the ``top`` operators
    by self time on the device (CPU time on the CPU), where the rest of a detection goes."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        fn()
        synchronize(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=50)


def markdown(res: dict) -> str:
    m = res["machine"]
    where = m.get("gpu") or m.get("cpu")
    lines = ["# Mask pasting: torchvision's loop against segzoo's batched paste", "",
             f"* Machine: {where}; torch {m['torch']}, torchvision {m['torchvision']}; {m['date']}; "
             f"segzoo {m.get('segzoo_commit')}.",
             f"* Command: `{res['command']}`",
             f"* Median of {res['repeats']} interleaved runs after {res['warmup']} warm-up runs.", "",
             "| case | torchvision loop ms | batched ms | loop / batched | max abs diff |",
             "|---|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['case']} | {r['loop_ms']:.2f} | {r['batched_ms']:.2f} | "
                     f"{r['loop_ms'] / r['batched_ms']:.2f}x | {r['max_abs_diff']:.1e} |")
    for r in res["rows"]:
        if r.get("profile"):
            lines += ["", f"Profile of one run of the detector with the batched paste ({r['case']}):", "",
                      "```", r["profile"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--num-masks", type=int, default=100)
    p.add_argument("--size", type=int, nargs=2, default=[800, 1333], metavar=("H", "W"))
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--model", action=argparse.BooleanOptionalAction, default=None,
                   help="also time the whole Mask R-CNN both ways (default: on CUDA)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a CPU dry run)")
    p.add_argument("--out", default="benchmarks/results/mask-paste")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.quick:
        args.num_masks, args.size, args.warmup, args.repeats = 10, [64, 96], 1, 2
    size = (args.size[0], args.size[1])
    rows = [paste_case(args.num_masks, size, device, args.warmup, args.repeats)]
    print(f"{rows[-1]['case']}: loop {rows[-1]['loop_ms']:.2f} ms, batched {rows[-1]['batched_ms']:.2f} ms", flush=True)
    if args.model if args.model is not None else (device.type == "cuda" or args.quick):
        rows.append(model_case(size, device, args.warmup, args.repeats, args.quick))
        print(f"{rows[-1]['case']}: loop {rows[-1]['loop_ms']:.2f} ms, batched {rows[-1]['batched_ms']:.2f} ms",
              flush=True)
    res = {"machine": machine_info(args.device), "command": "python " + " ".join(sys.argv),
           "warmup": args.warmup, "repeats": args.repeats, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mask_paste.json").write_text(json.dumps(res, indent=1))
    (out / "mask_paste.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
