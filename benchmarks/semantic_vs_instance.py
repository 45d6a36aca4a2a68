"""Semantic vs instance: every registered architecture trained with one schedule on the same data,
scored with semantic metrics (mIoU, pixel accuracy) and, through the cross-task conversions,
instance metrics (mask AP), with speed and size; writes the accuracy table and an
accuracy-vs-latency plot into docs/benchmarks.md.

    python benchmarks/semantic_vs_instance.py                    # shapes 64x64, 300 iterations
    python benchmarks/semantic_vs_instance.py --models fcn8s deeplabv3plus --iters 600
    python benchmarks/semantic_vs_instance.py --report-only      # rewrite the doc from the cache

Each model trains from its own shapes config (the table below) through the normal engine with the
common schedule of :func:`segzoo.bench.runs.common_schedule`; finished runs are cached in
``benchmarks/results/semantic_vs_instance.json`` and never rerun (runs with the same config as
``benchmarks/ablations.py`` share a run folder). Latency: the trained architecture at
``--latency-size`` (batch 1, CPU, a fresh worker process, median of ``--latency-repeats``).

Instance metrics. Both rows of every model come from the cross-task scoring of
``segzoo compare`` (:func:`segzoo.evaluation.compare.evaluate_run` on the run folder): a semantic
model's mask AP is the COCO AP of the connected components of its argmax map (score = mean class
probability, :func:`segzoo.metrics.cross_task.semantic_to_instances`); an instance model (Mask
R-CNN) gets its mIoU from its masks pasted by descending score
(:func:`segzoo.metrics.cross_task.instances_to_semantic`).
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segzoo.bench.candidates import Candidate  # noqa: E402
from segzoo.bench.report import replace_section  # noqa: E402
from segzoo.bench.runner import BenchSettings, Runner, for_timing  # noqa: E402
from segzoo.bench.runs import TrainSpec, common_schedule, load_cache, save_cache, train_cached  # noqa: E402
from segzoo.registry import MODELS  # noqa: E402

CACHE = REPO / "benchmarks" / "results" / "semantic_vs_instance.json"
DOC = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "img" / "accuracy_vs_latency.png"
WORK = REPO / "work_dirs" / "bench_runs"

# the shapes config of each registered model; models registered later (maskrcnn) are found by glob
SHAPES_CONFIGS = {
    "fcn32s": "configs/fcn/fcn32s_vgg16-bn_shapes-64x64.yaml",
    "fcn16s": "configs/fcn/fcn16s_vgg16-bn_shapes-64x64.yaml",
    "fcn8s": "configs/fcn/fcn8s_vgg16-bn_shapes-64x64.yaml",
    "fcn": "configs/fcn/fcn_resnet18_shapes-64x64.yaml",
    "unet": "configs/unet/unet_unet-encoder_shapes-64x64.yaml",
    "deeplabv2": "configs/deeplabv2/deeplabv2_resnet18_shapes-64x64.yaml",
    "deeplabv3": "configs/deeplabv3/deeplabv3_resnet18_shapes-64x64.yaml",
    "deeplabv3plus": "configs/deeplabv3plus/deeplabv3plus_resnet18_shapes-64x64.yaml",
    "encoder_decoder": "configs/composed/psphead-fcnaux_mobilenetv2_shapes-64x64.yaml",
    "pspnet": "configs/pspnet/pspnet_resnet18_shapes-64x64.yaml",
}
SEMANTIC_KEYS = ("mIoU", "pixel_acc")
INSTANCE_KEYS = ("mask_AP", "mask_AP50", "mask_AP75")


def registered_models() -> list[str]:
    return [n for n in MODELS.names() if not MODELS.entry(n).meta.get("test_only")]


def config_for(model: str) -> str | None:
    if model in SHAPES_CONFIGS:
        return str(REPO / SHAPES_CONFIGS[model])
    hits = sorted(glob.glob(str(REPO / "configs" / model / f"{model}_*shapes*.yaml")))
    return hits[0] if hits else None


def cross_task_scores(work_dir: str) -> dict:
    """Both rows of a trained run folder: ``{"task", "mIoU", "pixel_acc", "mask_AP", "mask_AP50",
    "mask_AP75", "bbox_AP", ...}`` from :func:`segzoo.evaluation.compare.evaluate_run` (scalars
    only; NaN, COCO's "no such objects", becomes None)."""
    from segzoo.evaluation.compare import evaluate_run

    metrics = evaluate_run(work_dir)
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            continue
        out[k] = None if isinstance(v, float) and math.isnan(v) else v
    return out


def model_kwargs_of(rec: dict) -> tuple[str, dict]:
    """The trained architecture (model name and builder kwargs) from its run folder's config."""
    from segzoo.config import load_config

    cfg = load_config(Path(rec["work_dir"]) / "config.yaml")
    kwargs = {k: v for k, v in cfg.model.kwargs.items() if k not in ("num_classes", "weights_backbone",
                                                                     "backbone_weights")}
    return cfg.model.name, kwargs


def measure_latency(rec: dict, size: int, repeats: int, threads: int | None, in_process: bool) -> dict:
    name, kwargs = model_kwargs_of(rec)
    settings = BenchSettings(models=[], repeats=repeats, warmup=1, threads=threads,
                             num_classes=rec.get("num_classes", 4), in_process=in_process)
    cand = for_timing(Candidate("segzoo", name, kwargs), (size, size))  # Mask R-CNN: run at `size`
    job = Runner(settings, log=lambda line: None).job([cand], "infer", 1, (size, size))
    if "error" in job:
        return {"error": job["error"]}
    return {"latency_ms": job["candidates"][0]["seconds"]["median"] * 1e3,
            "latency_iqr_ms": [job["candidates"][0]["seconds"]["p25"] * 1e3,
                               job["candidates"][0]["seconds"]["p75"] * 1e3],
            "size": size, "threads": job["threads"], "load_average": job["load_average"]["start"]}


def run_all(args: argparse.Namespace, log=print) -> dict:
    models = args.models or registered_models()
    cache_path = Path(args.cache)
    for model in models:
        config = config_for(model)
        key = f"shapes/{model}/seed{args.seed}"
        if config is None:
            log(f"{model}: no shapes config; skipped")
            continue
        spec = TrainSpec(key, config, (*common_schedule("shapes", args.iters, args.size, args.seed), *(args.set or [])))
        rec = train_cached(spec, args.work_dir, cache_path, log=log)
        cache = load_cache(cache_path)
        rec = cache["runs"][key]
        rec["num_classes"] = len(rec["metrics"].get("IoU") or {}) or rec.get("num_classes", 4)
        lat_key = f"{args.latency_size}/{args.latency_repeats}/{args.threads}"
        if rec.get("latency", {}).get("key") != lat_key:
            rec["latency"] = {"key": lat_key, **measure_latency(rec, args.latency_size, args.latency_repeats,
                                                                 args.threads, args.in_process)}
            log(f"  {model}: {rec['latency'].get('latency_ms', rec['latency'].get('error'))} ms "
                f"at {args.latency_size}x{args.latency_size}")
        if not rec.get("cross_task"):
            rec["cross_task"] = cross_task_scores(rec["work_dir"])
            log(f"  {model}: cross-task mask AP {rec['cross_task'].get('mask_AP')}, "
                f"mIoU {rec['cross_task'].get('mIoU')}")
        cache["runs"][key] = rec
        save_cache(cache_path, cache)
    return load_cache(cache_path)


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def rows(cache: dict, seed: int) -> list[dict]:
    out = []
    for key, rec in sorted(cache.get("runs", {}).items()):
        if not key.endswith(f"/seed{seed}"):
            continue
        own, cross = rec["metrics"], rec.get("cross_task") or {}
        task = cross.get("task") or ("instance" if any(k in own for k in INSTANCE_KEYS) else "semantic")
        row = {"model": rec["model"], "task": task, "params": rec.get("params"), "gflops": rec.get("gflops"),
               "train_seconds": None if rec.get("resumed") else rec.get("train_seconds"),
               "resumed": rec.get("resumed"), "latency": rec.get("latency", {}),
               "cross_task_available": bool(cross)}
        for k in SEMANTIC_KEYS + INSTANCE_KEYS:
            row[k] = own.get(k) if own.get(k) is not None else cross.get(k)
        out.append(row)
    return out


def table(rs: list[dict], latency_size: int) -> str:
    head = ["model", "task", "mIoU (%)", "pixel acc (%)", "mask AP (%)", "mask AP50 (%)", "params (M)",
            "GFLOPs (train size)", f"latency ms ({latency_size}x{latency_size}, b1)", "train time (s)",
            "derived row"]
    lines = ["| " + " | ".join(head) + " |", "|---|---" + "|---:" * (len(head) - 3) + "|---|"]
    for r in rs:
        lat = r["latency"].get("latency_ms")
        derived = ("instance: connected components" if r["task"] == "semantic" else "semantic: pasted masks")
        lines.append("| " + " | ".join([
            f"`{r['model']}`", r["task"], _pct(r["mIoU"]), _pct(r["pixel_acc"]), _pct(r["mask_AP"]),
            _pct(r["mask_AP50"]),
            f"{r['params'] / 1e6:.1f}" if r["params"] else "n/a",
            f"{r['gflops']:.2f}" if r["gflops"] else "n/a",
            f"{lat:.0f}" if lat else r["latency"].get("error", "n/a"),
            f"{r['train_seconds']:.0f}" if r["train_seconds"] else ("n/a (resumed)" if r["resumed"] else "n/a"),
            derived if r["cross_task_available"] else "n/a (not scored)"]) + " |")
    return "\n".join(lines)


def plot(rs: list[dict], path: Path, latency_size: int) -> str | None:
    """Accuracy (mIoU) against latency, one labelled point per model (area ~ parameters); returns
    an error note instead of raising when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no plot"
    pts = sorted((r for r in rs if r["mIoU"] is not None and r["latency"].get("latency_ms")),
                 key=lambda r: r["latency"]["latency_ms"])
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    span = max([100 * r["mIoU"] for r in pts] or [1]) - min([100 * r["mIoU"] for r in pts] or [0]) or 1
    placed: list[tuple[float, float]] = []
    for r in pts:
        x, y = r["latency"]["latency_ms"], 100 * r["mIoU"]
        size = 20 + 4 * (r["params"] or 0) / 1e6
        color = "tab:orange" if r["task"] == "instance" else "tab:blue"
        ax.scatter(x, y, s=size, color=color, alpha=0.7, edgecolor="black", linewidth=0.5,
                   label=r["task"] if r["task"] not in ax.get_legend_handles_labels()[1] else None)
        crowded = any(abs(math.log(x / px)) < 0.15 and abs(y - py) < 0.06 * span for px, py in placed)
        ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(5, -11 if crowded else 4), fontsize=8)
        placed.append((x, y))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.margins(x=0.1, y=0.08)
    ax.legend(loc="best", fontsize=8)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"CPU latency, ms per {latency_size}x{latency_size} image (batch 1, log scale)")
    ax.set_ylabel("mIoU on shapes val (%)")
    ax.set_title("Accuracy vs latency (marker area ~ parameters)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return None


def report(cache: dict, args: argparse.Namespace, doc: Path) -> str:
    rs = rows(cache, args.seed)
    note = plot(rs, Path(args.plot), args.latency_size) if rs else "no runs yet"
    rel = Path(args.plot)
    try:
        rel = rel.resolve().relative_to(doc.resolve().parent)
    except ValueError:
        pass
    loads = [r["latency"]["load_average"][0] for r in rs if r["latency"].get("load_average")]
    return "\n".join([
        f"Runs: `python benchmarks/semantic_vs_instance.py --iters {args.iters} --size {args.size} "
        f"--seed {args.seed} --latency-size {args.latency_size}"
        + (f" --threads {args.threads}" if args.threads else "") + "` (cached in "
        "`benchmarks/results/semantic_vs_instance.json`). Each model: its shapes config (built-in "
        f"synthetic data, {args.size}x{args.size}, 4 classes), {args.iters} iterations, from scratch; "
        "mIoU / pixel accuracy on the 64-image val split. Latency: the trained architecture on "
        f"this CPU, fresh process, median of {args.latency_repeats}, 1-minute load average "
        + (f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a") + " at the measurements.",
        "",
        table(rs, args.latency_size),
        "",
        f"![accuracy vs latency]({rel})" if note is None else f"(plot not written: {note})",
        "",
        "Both rows of every model come from `segzoo compare`'s cross-task scoring on the same val "
        "images: a semantic model's mask AP is COCO AP of the connected components of its argmax "
        "map (score = mean class probability); an instance model's mIoU and pixel accuracy come "
        "from its masks pasted by descending score (detections with score >= 0.5).",
    ])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="registered model names (default: all)")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE", help="extra config overrides")
    parser.add_argument("--latency-size", type=int, default=512)
    parser.add_argument("--latency-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (training and latency)")
    parser.add_argument("--in-process", action="store_true", help="measure latency in this process")
    parser.add_argument("--work-dir", default=str(WORK))
    parser.add_argument("--cache", default=str(CACHE))
    parser.add_argument("--doc", default=str(DOC))
    parser.add_argument("--plot", default=str(PLOT))
    parser.add_argument("--report-only", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cache = load_cache(args.cache) if args.report_only else run_all(args)
    replace_section(args.doc, "semantic-vs-instance", report(cache, args, Path(args.doc)))
    print(f"updated {args.doc} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
