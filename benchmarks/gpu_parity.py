"""bf16 against fp32 training: every registered model trained 50 steps both ways from the same
initial weights on the same fixed batch, loss curves side by side.

    python benchmarks/gpu_parity.py --out benchmarks/results/gpu-h100     # on a GPU (~1 min)
    python benchmarks/gpu_parity.py --device cpu --quick --out /tmp/x     # dry run, seconds

The batch is real learnable data, not noise: ``shapes`` images (:mod:`segzoo.data.shapes`;
circles, squares and triangles on a textured background) with their semantic masks for the
semantic models (ImageNet-normalised input, cross-entropy of every output weighted by
``model.loss_weights``) and their boxes, masks and extreme-point keypoints for Mask R-CNN and
Keypoint R-CNN (0..1 input, the sum of the model's loss dict). Every model is the registered
default (VGG-16 FCNs, ResNet DeepLabs and PSPNet, U-Net, R50-FPN detectors), randomly initialised
with seed 0, trained with SGD (momentum 0.9; lr 0.01, 0.002 for the detectors) in fp32 and then,
from the same initial weights, under bf16 autocast (the engine's ``train.amp: bf16``).

Verdict per model (stated tolerance): **tracks** when every bf16 loss is finite and the mean of
its last 10 losses is within 10% of the fp32 run's first loss of the fp32 run's last-10 mean;
else **diverges**. Trajectories of two precisions part after a few steps (rounding reorders the
optimisation), so the criterion compares loss levels, not step-by-step values.

Writes ``gpu_parity.json`` (every step's loss) and ``gpu_parity.md`` (losses at steps 1, 10, 20,
..., the verdicts) into ``--out``. The exit status is 1 when a model diverges or fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import segzoo  # noqa: E402
from segzoo.bench.machine import machine_info  # noqa: E402
from segzoo.constants import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from segzoo.data.shapes import ShapesDataset  # noqa: E402

TOLERANCE = 0.10  # of the fp32 run's first loss
NUM_CLASSES = 4   # shapes: background, circle, square, triangle
QUICK_MODELS = {"unet": {"base_channels": 8}, "deeplabv3plus": {"backbone": "resnet18"},
                "maskrcnn": {"backbone": "resnet18"}}


def fixed_batch(batch: int, size: int, device: torch.device) -> dict:
    """``batch`` shapes images (train split, seed 0) as semantic inputs/labels and detection
    inputs/targets, on ``device``."""
    ds = ShapesDataset(split="train", num_images=batch, size=(size, size), min_shapes=2, keypoints=True)
    samples = [ds[i] for i in range(batch)]
    x = torch.stack([s["image"] for s in samples]).float().div(255)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    targets = []
    for s in samples:
        inst = s["instances"]
        kp = torch.cat([inst["keypoints"].float(), inst["keypoints_visible"].float()[..., None]], -1)
        targets.append({"boxes": inst["boxes"].float().to(device), "labels": inst["labels"].to(device),
                        "masks": inst["masks"].to(device), "keypoints": kp.to(device)})
    return {"semantic": ((x - mean) / std).to(device), "labels": torch.stack([s["mask"] for s in samples]).long().to(device),
            "images": list(x.to(device)), "targets": targets}


def build(name: str, kwargs: dict, device: torch.device, size: int) -> torch.nn.Module:
    """The registered model with seed-0 weights on ``device``; detectors keep the images at
    ``size`` (no resize to 800) and Keypoint R-CNN predicts the shapes' 4 keypoints."""
    torch.manual_seed(0)
    if "rcnn" in name:
        kwargs = {"min_size": size, "max_size": size, **kwargs}
    if name == "keypointrcnn":
        kwargs = {**kwargs, "num_keypoints": 4}
    with torch.device(device):
        return segzoo.build_model(name, num_classes=NUM_CLASSES, **kwargs).to(device)


def train(model: torch.nn.Module, data: dict, dtype: torch.dtype | None, steps: int) -> list[float]:
    """``steps`` SGD steps on ``data`` (autocast to ``dtype`` when given); the loss of each."""
    device = data["semantic"].device
    instance = getattr(model, "task", "semantic") == "instance"
    opt = torch.optim.SGD(model.parameters(), lr=0.002 if instance else 0.01, momentum=0.9)
    weights = getattr(model, "loss_weights", None) or {"out": 1.0}
    model.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            if instance:
                loss = sum(model(data["images"], data["targets"]).values())
            else:
                out = model(data["semantic"])
                out = out if isinstance(out, dict) else {"out": out}
                loss = sum(w * F.cross_entropy(out[k].float(), data["labels"]) for k, w in weights.items() if k in out)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def verdict(fp32: list[float], bf16: list[float]) -> dict:
    """Compare the two curves (see the module docstring): gap = (bf16 last-10 mean - fp32 last-10
    mean) / fp32 first loss."""
    tail = min(10, len(fp32))
    a, b = sum(fp32[-tail:]) / tail, sum(bf16[-tail:]) / tail
    finite = all(math.isfinite(v) for v in bf16 + fp32)
    gap = (b - a) / fp32[0] if finite and fp32[0] else float("nan")
    ok = finite and abs(gap) <= TOLERANCE
    return {"fp32_last10": a, "bf16_last10": b, "gap": gap, "verdict": "tracks" if ok else "diverges"}


def markdown(res: dict) -> str:
    m = res["machine"]
    where = (f"{m['gpu']} (driver {m.get('gpu_driver')}, CUDA {m.get('cuda')})" if m.get("gpu")
             else f"{m['cpu']}, {m['cpu_count']} cores (no GPU)")
    marks = sorted({0, *range(9, res["steps"], 10), res["steps"] - 1})
    lines = ["# bf16 against fp32 training, loss curves", "",
             f"* Machine: {where}; torch {m['torch']}; {m['date']}; segzoo {m.get('segzoo_commit')}.",
             f"* Command: `{res['command']}`",
             f"* {res['steps']} SGD steps from the same initial weights on one fixed batch of {res['batch']} "
             f"shapes images at {res['size']}x{res['size']}; verdict 'tracks' when the bf16 last-10 mean "
             f"loss is within {TOLERANCE:.0%} of the first fp32 loss of the fp32 last-10 mean.", "",
             "| model | dtype | " + " | ".join(f"step {i + 1}" for i in marks) + " | last-10 gap | verdict |",
             "|---|---|" + "---:|" * len(marks) + "---:|---|"]
    for r in res["models"]:
        if "error" in r:
            lines.append(f"| `{r['model']}` | - | " + " | ".join("-" for _ in marks) + f" | - | failed: {r['error']} |")
            continue
        for dt in ("fp32", "bf16"):
            vals = " | ".join(f"{r[dt][i]:.3f}" for i in marks)
            tail = f"{r['gap']:+.1%} | **{r['verdict']}**" if dt == "bf16" else " | "
            lines.append(f"| `{r['model']}` | {dt} | {vals} | {tail} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", nargs="+", default=["all"])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--quick", action="store_true", help="3 small models, 64 px, 6 steps (a dry run)")
    p.add_argument("--out", default="benchmarks/results/gpu-parity")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_parity: no CUDA device", file=sys.stderr)
        return 2
    if args.quick:
        args.size, args.steps, args.batch = 64, 6, 2
        models = {m: QUICK_MODELS[m] for m in QUICK_MODELS if args.models == ["all"] or m in args.models}
    else:
        models = {m: {} for m in (segzoo.list_models() if args.models == ["all"] else args.models)}
    models.pop("encoder_decoder", None)  # the generic assembly; its named models are all here
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = fixed_batch(args.batch, args.size, device)
    res = {"machine": machine_info(args.device), "command": "python " + " ".join(sys.argv),
           "steps": args.steps, "batch": args.batch, "size": args.size, "tolerance": TOLERANCE, "models": []}
    failed = False
    for name, kwargs in models.items():
        t0 = time.perf_counter()
        try:
            curves = {}
            for dt, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
                model = build(name, kwargs, device, args.size)
                curves[dt] = train(model, data, dtype, args.steps)
                del model
            row = {"model": name, "kwargs": kwargs, **curves, **verdict(curves["fp32"], curves["bf16"])}
        except Exception as exc:  # recorded; the other models go on
            row = {"model": name, "kwargs": kwargs, "error": f"{type(exc).__name__}: {str(exc)[:200]}",
                   "verdict": "failed"}
        row["wall_s"] = time.perf_counter() - t0
        failed |= row["verdict"] != "tracks"
        res["models"].append(row)
        print(f"{name}: {row['verdict']}" + (f" (gap {row['gap']:+.1%}, fp32 {row['fp32'][0]:.3f} -> "
              f"{row['fp32_last10']:.3f}, bf16 -> {row['bf16_last10']:.3f})" if "gap" in row else
              f" ({row.get('error')})") + f", {row['wall_s']:.0f} s", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        (out / "gpu_parity.json").write_text(json.dumps(res, indent=1))
        (out / "gpu_parity.md").write_text(markdown(res))
    print(f"wrote {out}/gpu_parity.json and {out}/gpu_parity.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
