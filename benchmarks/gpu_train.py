"""Training throughput and peak GPU memory of the zoo next to torchvision, fp32 vs bf16.

    python benchmarks/gpu_train.py --out benchmarks/results/gpu-h100      # on a GPU (~1-2 min)
    python benchmarks/gpu_train.py --device cpu --quick --out /tmp/x       # dry run, seconds

Two groups, each timed in this one process with the models' steps interleaved (round r runs them
in an order rotated by r, :func:`segzoo.bench.timing.run_interleaved`):

Precisions (``--dtypes``): fp32, bf16 autocast with channels_last (``bf16-cl``: the engine's
``train.amp: bf16`` + ``train.channels_last: true``, NHWC for the tensor cores) and plain bf16.

* semantic, 512x1024 crops (Cityscapes-sized), batch 8: segzoo DeepLab v3+ ResNet-50 (output
  stride 16, the paper's training setting), segzoo DeepLab v3 ResNet-50 in torchvision's layout
  (OS 8, the same network as torchvision's) and torchvision's ``deeplabv3_resnet50``;
* instance, 800x1333, batch 4: segzoo Mask R-CNN R50-FPN and torchvision's
  ``maskrcnn_resnet50_fpn``, on fixed synthetic targets (3 boxes and masks per image).

One training step = forward (autocast for bf16), loss, backward, SGD step (momentum 0.9)
(:func:`segzoo.bench.timing.training_step`: cross-entropy on fixed random labels, or the sum of
Mask R-CNN's losses). cuDNN autotuning is on (as in the engine without ``train.deterministic``),
TF32 settings are torch's defaults (recorded). img/s = batch / median step time after warm-up.
Peak memory = ``torch.cuda.max_memory_allocated`` over 2 steps (after 1 warm-up step, whose cuDNN
autotuning tries large workspaces) of the model alone on the GPU
(weights, gradients, optimizer state and activations). Losses of every step are kept so that fp32
and bf16 runs from the same initial weights on the same data can be compared.

Writes ``gpu_train.json`` and ``gpu_train.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segzoo.bench.candidates import Candidate  # noqa: E402
from segzoo.bench.machine import machine_info, synchronize  # noqa: E402
from segzoo.bench.timing import DTYPES, run_interleaved, training_step  # noqa: E402
from segzoo.bench.worker import build_on  # noqa: E402

TV_DLV3 = {"backbone": "resnet50", "output_stride": 8, "bottleneck": True, "aspp_dropout": 0.5}


def groups(quick: bool) -> list[dict]:
    """The benchmark groups (``quick``: tiny sizes and ResNet-18 segzoo models, for a dry run)."""
    r50 = "resnet18" if quick else "resnet50"
    return [
        {"name": "semantic", "size": (32, 64) if quick else (512, 1024), "batch": 2 if quick else 8,
         "num_classes": 19, "candidates": [
             Candidate("segzoo", "deeplabv3plus", {"backbone": r50, "output_stride": 16}),
             Candidate("segzoo", "deeplabv3", {**TV_DLV3, "backbone": r50}),
             Candidate("torchvision", "deeplabv3_resnet50", {"aux_loss": False})]},
        {"name": "instance", "size": (64, 64) if quick else (800, 1333), "batch": 1 if quick else 4,
         "num_classes": 81, "candidates": [
             Candidate("segzoo", "maskrcnn", {"backbone": r50}),
             Candidate("torchvision", "maskrcnn_resnet50_fpn", {})]},
    ]


def sized(c: Candidate, size: tuple[int, int]) -> Candidate:
    """Detection models resize their input themselves: keep it at ``size``."""
    if "rcnn" not in c.name:
        return c
    return Candidate(c.source, c.name, {**c.kwargs, "min_size": min(size), "max_size": max(size)})


def images_for(group: dict, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    h, w = group["size"]
    x = torch.rand(group["batch"], 3, h, w, generator=torch.Generator().manual_seed(1)).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def precision(name: str) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, channels_last) of a ``--dtypes`` entry: ``fp32``, ``bf16``, ``fp16``, each
    optionally with ``-cl`` (weights and input in channels_last, as ``train.channels_last``)."""
    base, cl = (name[:-3], True) if name.endswith("-cl") else (name, False)
    return DTYPES[base], cl


def build(c: Candidate, group: dict, device: torch.device, channels_last: bool) -> torch.nn.Module:
    model = build_on(c, group["num_classes"], device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def peak_memory(c: Candidate, group: dict, name: str, device: torch.device) -> float | None:
    """Peak CUDA MiB of 2 training steps of ``c`` alone on the GPU (None on the CPU)."""
    if device.type != "cuda":
        return None
    dtype, cl = precision(name)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    model = build(c, group, device, cl)
    step = training_step(model, images_for(group, device, cl), dtype, group["num_classes"])
    step()  # warm-up: cuDNN's autotuning tries algorithms with large workspaces on the first step
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):
        step()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    del model, step
    torch.cuda.empty_cache()
    return peak


def run_group(group: dict, dtype_name: str, device: torch.device, warmup: int, steps: int) -> dict:
    dtype, cl = precision(dtype_name)
    cands = [sized(c, group["size"]) for c in group["candidates"]]
    peaks = [peak_memory(c, group, dtype_name, device) for c in cands]
    models = [build(c, group, device, cl) for c in cands]  # seed 0 each: same init per dtype
    images = images_for(group, device, cl)
    losses: list[list] = [[] for _ in cands]

    def keep(i, step):
        def run():
            losses[i].append(step())
        return run

    fns = [keep(i, training_step(m, images, dtype, group["num_classes"])) for i, m in enumerate(models)]
    t0 = time.perf_counter()
    times = run_interleaved(fns, warmup=warmup, repeats=steps, device=device)
    wall = time.perf_counter() - t0
    rows = []
    for c, t, peak, loss in zip(cands, times, peaks, losses):
        med = statistics.median(t)
        rows.append({"label": c.label, "candidate": c.to_dict(), "step_s": t, "median_step_s": med,
                     "img_per_s": group["batch"] / med, "peak_mem_mib": peak,
                     "losses": [x.item() for x in loss]})
    del models, fns
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"group": group["name"], "dtype": dtype_name, "size": list(group["size"]),
            "batch": group["batch"], "num_classes": group["num_classes"], "warmup": warmup,
            "steps": steps, "wall_s": wall, "models": rows}


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = ["# Training throughput and peak memory", "",
             "* Machine: " + (f"{m['gpu']} ({m.get('gpu_memory_gib')} GiB, driver {m.get('gpu_driver')}, "
                               f"CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}, TF32 {m.get('tf32')})"
                               if m.get("gpu") else f"{m['cpu']}, {m['cpu_count']} cores (no GPU)")
             + f"; torch {m['torch']}, torchvision {m['torchvision']}; {m['date']}; segzoo {m.get('segzoo_commit')}.",
             f"* Command: `{results['command']}`",
             f"* {results['warmup']} warm-up + {results['steps']} timed steps per model, interleaved; "
             "cuDNN autotuning on; SGD momentum 0.9; img/s = batch / median step time.", "",
             "| group | input | batch | model | dtype | step ms (median) | img/s | peak MiB | bf16 / fp32 img/s | first -> last loss |",
             "|---|---|---:|---|---|---:|---:|---:|---:|---|"]
    fp32 = {(r["group"], x["label"]): x["img_per_s"] for r in results["runs"] if r["dtype"] == "fp32"
            for x in r["models"]}
    for r in results["runs"]:
        for x in r["models"]:
            speedup = x["img_per_s"] / fp32[(r["group"], x["label"])] if (
                r["dtype"] != "fp32" and (r["group"], x["label"]) in fp32) else None
            peak = "n/a" if x["peak_mem_mib"] is None else f"{x['peak_mem_mib']:.0f}"
            lines.append(f"| {r['group']} | {r['size'][0]}x{r['size'][1]} | {r['batch']} | `{x['label']}` | "
                         f"{r['dtype']} | {x['median_step_s'] * 1e3:.0f} | {x['img_per_s']:.1f} | {peak} | "
                         f"{'-' if speedup is None else f'{speedup:.2f}x'} | "
                         f"{x['losses'][0]:.3f} -> {x['losses'][-1]:.3f} |")
    for e in results.get("errors", []):
        lines.append(f"\n* {e['group']} {e['dtype']} failed: {e['error']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16-cl", "bf16"],
                   choices=[*DTYPES, *(f"{d}-cl" for d in DTYPES)],
                   help="precisions in this order; -cl: channels_last weights and input")
    p.add_argument("--groups", nargs="+", default=["semantic", "instance"])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="tiny sizes, ResNet-18 (a dry run on the CPU)")
    p.add_argument("--out", default="benchmarks/results/gpu-train")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_train: no CUDA device", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    if args.quick:
        args.warmup, args.steps = 0, 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine_info(args.device), "command": "python " + " ".join(sys.argv),
               "warmup": args.warmup, "steps": args.steps, "runs": [], "errors": []}
    for group in groups(args.quick):
        if group["name"] not in args.groups:
            continue
        for dtype in args.dtypes:
            print(f"{group['name']} {dtype} {group['size']} b{group['batch']} ...", flush=True)
            try:
                run = run_group(group, dtype, device, args.warmup, args.steps)
            except Exception as exc:  # e.g. out of memory: recorded, the other runs go on
                results["errors"].append({"group": group["name"], "dtype": dtype,
                                          "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
                print(f"  failed: {type(exc).__name__}: {exc}", flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            results["runs"].append(run)
            for x in run["models"]:
                peak = "" if x["peak_mem_mib"] is None else f", peak {x['peak_mem_mib']:.0f} MiB"
                print(f"  {x['label']}: {x['median_step_s'] * 1e3:.0f} ms/step, {x['img_per_s']:.1f} img/s{peak}",
                      flush=True)
            (out / "gpu_train.json").write_text(json.dumps(results, indent=1))
            (out / "gpu_train.md").write_text(markdown(results))
    (out / "gpu_train.json").write_text(json.dumps(results, indent=1))
    (out / "gpu_train.md").write_text(markdown(results))
    print(f"wrote {out}/gpu_train.json and {out}/gpu_train.md")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
