"""DeepLab v3's inference-only ablation on camvid-cpu: the same trained weights scored at output
stride 8 and at the training stride 16 (Chen et al. 2017, sec. 4: train at OS 16, infer at OS 8
with the ASPP rates doubled).

    python benchmarks/os_inference.py                  # every finished seed of the camvid-cpu run
    python benchmarks/os_inference.py --seeds 0 1 --threads 1

For each seed whose run folder ``work_dirs/protocols/camvid-cpu/<model>/seed<k>/`` has a
``metrics.json``, its ``checkpoints/last.pt`` (read only) is evaluated twice with
:func:`segzoo.evaluation.evaluate_checkpoint` on the run's own ``config.yaml``: as trained, and with
``model.output_stride=8`` (the default ASPP rates follow: 6/12/18 -> 12/24/36; the MobileNetV2
blocks after stride 8 run with doubled dilation). Nothing else changes (same val pipeline, the
same 180x240 input scored against the 360x480 labels). Writes
``benchmarks/results/protocols/camvid-cpu-ablations/<model>_os8-inference_seed<k>.json``
(schema: :func:`result`); ``compare_report`` renders it in the paper-ablation table. ``--rates 6 12
18`` keeps the training rates at OS 8 (a diagnostic: the encoder's stride alone),
``<model>_os8-rates6-12-18-inference_seed<k>.json``. ``--full-res`` scores the same weights on the
val images at their full 360x480 instead (no resize; a recipe ablation),
``<model>_full-res-inference_seed<k>.json``::

    python benchmarks/os_inference.py --model fcn8s_mobilenetv2 --full-res
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from compare import SEMANTIC_KEYS, git_commit, rel_path  # noqa: E402

KIND = "inference-ablation"


def _metrics(m: dict) -> dict:
    """The summary and per-class numbers of an evaluation, as in the protocol's result JSONs."""
    return {"metrics": {k: m.get(k) for k in SEMANTIC_KEYS},
            "per_class": {k: m.get(k) for k in ("IoU", "acc", "bIoU")}}


def evaluate_at(run_dir: Path, overrides: list[str]) -> tuple[dict, float]:
    """(metrics, seconds) of ``run_dir``'s last checkpoint scored with the run's config plus
    ``overrides`` ([]: as trained). The loader allows ``model.output_stride`` /
    ``model.atrous_rates`` to differ from the trained model (same weights), as ``segzoo eval
    run/config.yaml --checkpoint ... --set model.output_stride=8`` does; ``data.val.*`` changes only
    the val pipeline."""
    from segzoo.config import load_config
    from segzoo.evaluation.checkpoint_eval import evaluate_checkpoint

    cfg = load_config(run_dir / "config.yaml", overrides)
    start = time.time()
    metrics = evaluate_checkpoint(cfg, run_dir / "checkpoints" / "last.pt", device="cpu", progress=False)
    return metrics, time.time() - start


# --full-res: the val images at their full 360x480 instead of resized to the protocol's 180x240
FULL_RES = ["data.val.transforms=[]"]


def name(model: str, output_stride: int | None, rates: list[int] | None = None) -> str:
    """The variant's model name: ``<model>_os8-inference``, ``<model>_os8-rates6-12-18-inference``;
    ``<model>_full-res-inference`` for ``output_stride=None`` (the --full-res variant)."""
    if output_stride is None:
        return f"{model}_full-res-inference"
    return f"{model}_os{output_stride}" + (f"-rates{'-'.join(map(str, rates))}" if rates else "") + "-inference"


def result(model: str, seed: int, run_dir: Path, base: dict, variant: dict, *, base_os: int,
           variant_os: int | None, seconds: dict, threads: int, rates: list[int] | None = None) -> dict:
    """The result JSON: ``kind``, protocol, model (``<model>_os<k>-inference``), base_model, seed,
    checkpoint, the ablated key and its two values, then ``metrics``/``per_class`` of the variant
    (fractions 0..1, as the training results) and ``baseline`` (the same for the trained stride),
    the trained run's own ``metrics.json`` mIoU as a check, eval seconds, machine, torch, commit."""
    import torch

    from segzoo.bench.machine import cpu_model

    trained = json.loads((run_dir / "metrics.json").read_text())
    return {
        "kind": KIND, "protocol": "camvid-cpu-ablations", "model": name(model, variant_os, rates),
        "base_model": model, "base_protocol": "camvid-cpu", "seed": seed,
        "checkpoint": rel_path(run_dir / "checkpoints" / "last.pt"),
        "iterations": variant.get("iteration"),
        "ablated": ({"data.val.transforms": ["resize to 180x240", "none (360x480)"]} if variant_os is None
                    else {"model.output_stride": [base_os, variant_os],
                          **({"model.atrous_rates": [None, rates]} if rates else {})}),
        **_metrics(variant), "baseline": _metrics(base),
        "trained_metrics_mIoU": trained.get("mIoU"), "eval_s": {k: round(v, 1) for k, v in seconds.items()},
        "threads": threads, "machine": cpu_model(), "torch": torch.__version__, "commit": git_commit(),
        "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="deeplabv3_mobilenetv2")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--output-stride", type=int, default=8)
    p.add_argument("--rates", nargs="+", type=int,
                   help="ASPP rates at the new stride (default: scaled, 12 24 36 at OS 8); a diagnostic")
    p.add_argument("--full-res", action="store_true",
                   help="instead of another stride: the val images at full 360x480 (no resize), "
                        "<model>_full-res-inference_seed<k>.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-root", type=Path, default=REPO / "work_dirs" / "protocols" / "camvid-cpu")
    p.add_argument("--out-dir", type=Path,
                   default=REPO / "benchmarks" / "results" / "protocols" / "camvid-cpu-ablations")
    p.add_argument("--force", action="store_true", help="re-evaluate seeds that have a result")
    args = p.parse_args(argv)
    import torch

    from segzoo.config import load_config

    torch.set_num_threads(args.threads)
    for seed in args.seeds:
        run_dir = args.work_root / args.model / f"seed{seed}"
        variant_os = None if args.full_res else args.output_stride
        out = args.out_dir / f"{name(args.model, variant_os, args.rates)}_seed{seed}.json"
        if not (run_dir / "metrics.json").is_file():
            print(f"seed {seed}: {run_dir} has no metrics.json (not finished), skipped")
            continue
        if out.is_file() and not args.force:
            print(f"seed {seed}: {out.name} exists, skipped")
            continue
        base_os = load_config(run_dir / "config.yaml").model.kwargs.get("output_stride")
        if args.full_res:
            overrides, tag = FULL_RES, "full-res"
        else:
            overrides = [f"model.output_stride={args.output_stride}"] + (
                [f"model.atrous_rates=[{','.join(map(str, args.rates))}]"] if args.rates else [])
            tag = f"os{args.output_stride}"
        base, t_base = evaluate_at(run_dir, [])
        variant, t_var = evaluate_at(run_dir, overrides)
        res = result(args.model, seed, run_dir, base, variant, base_os=base_os, variant_os=variant_os,
                     seconds={"as trained": t_base, tag: t_var}, threads=args.threads, rates=args.rates)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"seed {seed}: mIoU as trained {100 * base['mIoU']:.2f} -> {tag} "
              f"{100 * variant['mIoU']:.2f}; mBIoU {100 * base['mBIoU']:.2f} -> {100 * variant['mBIoU']:.2f} "
              f"({rel_path(out)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
