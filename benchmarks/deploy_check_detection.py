"""Deploy mode of a trained detector against its eager self: the same detections?

    python benchmarks/deploy_check_detection.py                      # DSB Mask R-CNN, CPU
    python benchmarks/deploy_check_detection.py --device cuda --dtypes fp32 bf16

Loads a finished run (``--work-dir``: its ``config.yaml`` and ``checkpoints/last.pt``; default the
dsb2018-cpu protocol's Mask R-CNN MobileNetV2-FPN, seed 0), takes the first ``--images`` images
of its val split through the val pipeline, and for each ``--dtypes`` builds the deploy variant
(:func:`segzoo.export.deploy.optimize_for_inference`: conv+BN fused, channels_last, autocast to
that dtype; ``bf16-backbone``: float32 with the backbone and FPN alone in bf16). Each image's deploy detections are matched to the eager float32 ones
(:func:`segzoo.export.detection.compare_detections`: score >= 0.5, same label, box IoU > 0.5;
detections within 1e-4 of the score threshold or of the 500th score may go either way).

The issue's criterion (docs/benchmarks.md): the same boxes above score 0.5 (no unmatched
detection) and mask IoU >= 0.99 (pixels within 1e-3 of the 0.5 probability threshold left out).
Eager and deploy are also timed, interleaved per image (median of per-image ratios).

Writes ``deploy_check_detection.{json,md}`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segzoo import builders  # noqa: E402
from segzoo.bench.machine import machine_info, synchronize  # noqa: E402
from segzoo.checkpoint.trained_model import load_trained_model  # noqa: E402
from segzoo.config import load_config  # noqa: E402
from segzoo.export.deploy import optimize_for_inference  # noqa: E402
from segzoo.export.detection import compare_detections, detections_to_numpy  # noqa: E402

RUN = "work_dirs/protocols/dsb2018-cpu/maskrcnn_mobilenetv2/seed0"


class AutocastBackbone(torch.nn.Module):
    """A detector's backbone (+ FPN) run under bf16 autocast, its features returned in float32,
    so that the RPN and RoI heads stay float32 (the ``bf16-backbone`` variant)."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.out_channels = backbone.out_channels

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            feats = self.backbone(x)
        if isinstance(feats, dict):
            return {k: v.float() for k, v in feats.items()}
        return [v.float() for v in feats]


def deploy_variant(model: torch.nn.Module, variant: str, example: list) -> torch.nn.Module:
    """``fp32``/``bf16``/``fp16``: :func:`optimize_for_inference` with that autocast;
    ``bf16-backbone``: float32 deploy with only the backbone in bf16."""
    if variant == "bf16-backbone":
        deployed = optimize_for_inference(model, example=example)
        deployed.model.backbone = AutocastBackbone(deployed.model.backbone)
        return deployed
    return optimize_for_inference(model, dtype=None if variant == "fp32" else variant, example=example)


def timed(fn, image, device):
    synchronize(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = fn([image])[0]
    synchronize(device)
    return out, time.perf_counter() - t0


def check(eager, deployed, images, device, max_det) -> dict:
    """Per-image comparisons and timings of ``deployed`` against ``eager``, summed up."""
    total = {"images": len(images), "detections": 0, "unmatched_ref": 0, "unmatched_got": 0, "box_diff": 0.0,
             "score_diff": 0.0, "mask_iou": 1.0, "mask_iou_decided": 1.0, "ratios": []}
    for image in images:
        (ref, t_ref), (got, t_got) = timed(eager, image, device), timed(deployed, image, device)
        cmp = compare_detections(detections_to_numpy(ref), detections_to_numpy(got), score_threshold=0.5, max_detections=max_det)
        for k in ("detections", "unmatched_ref", "unmatched_got"):
            total[k] += cmp[k]
        for k in ("box_diff", "score_diff"):
            total[k] = max(total[k], cmp[k])
        for k in ("mask_iou", "mask_iou_decided"):
            total[k] = min(total[k], cmp[k])
        total["ratios"].append(t_got / t_ref)
    total["deploy_over_eager"] = statistics.median(total["ratios"])
    total["criterion_met"] = (total["unmatched_ref"] == 0 and total["unmatched_got"] == 0
                              and total["mask_iou_decided"] >= 0.99)
    return total


def markdown(res: dict) -> str:
    m = res["machine"]
    where = f"{m['gpu']}" if m.get("gpu") else f"{m['cpu']}, {m['cpu_count']} cores"
    lines = ["# Deploy mode of a trained detector against eager float32", "",
             f"* Machine: {where}; torch {m['torch']}; {m['date']}; segzoo {m.get('segzoo_commit')}.",
             f"* Command: `{res['command']}`", f"* Run: `{res['work_dir']}` ({res['images']} val images).", "",
             "| deploy variant | detections >= 0.5 matched | unmatched eager / deploy | max box diff (px) | "
             "max score diff | min mask IoU (decided pixels) | min mask IoU (all) | deploy / eager time | criterion |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for dt, r in res["variants"].items():
        lines.append(f"| {dt} | {r['detections']} | {r['unmatched_ref']} / {r['unmatched_got']} | "
                     f"{r['box_diff']:.2g} | {r['score_diff']:.2g} | {r['mask_iou_decided']:.4f} | "
                     f"{r['mask_iou']:.4f} | {r['deploy_over_eager']:.2f} | "
                     f"{'met' if r['criterion_met'] else 'not met'} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", default=RUN)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16", "bf16-backbone"],
                   choices=["fp32", "bf16", "fp16", "bf16-backbone"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="benchmarks/results/deploy")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    wd = REPO / args.work_dir if not Path(args.work_dir).is_absolute() else Path(args.work_dir)
    cfg = load_config(wd / "config.yaml")
    model, _ = load_trained_model(cfg, wd / "checkpoints" / "last.pt", device=device)
    model.eval()
    dataset = builders.dataset_from_split(cfg, cfg.data.val)
    images = [dataset[i]["image"].float().to(device) for i in range(min(args.images, len(dataset)))]
    max_det = getattr(model.roi_heads, "detections_per_img", None)
    res = {"machine": machine_info(args.device), "command": "python " + " ".join(sys.argv),
           "work_dir": args.work_dir, "images": len(images), "variants": {}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for dt in args.dtypes:
        deployed = deploy_variant(model, dt, images[:1])
        r = check(model, deployed, images, device, max_det)
        res["variants"][dt] = r
        print(f"{dt}: {r['detections']} matched, unmatched {r['unmatched_ref']}/{r['unmatched_got']}, "
              f"box diff {r['box_diff']:.2g} px, mask IoU >= {r['mask_iou_decided']:.4f}, "
              f"deploy/eager {r['deploy_over_eager']:.2f}", flush=True)
        (out / "deploy_check_detection.json").write_text(json.dumps(res, indent=1))
        (out / "deploy_check_detection.md").write_text(markdown(res))
    print(f"wrote {out}/deploy_check_detection.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
