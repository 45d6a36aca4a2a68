"""int8 (PT2E, x86 inductor) against float32 on CamVid val for trained camvid-cpu runs: mIoU of
fp32 vs int8 on the full val split, and latency at 360x480, batch 1, on this CPU of fp32 eager,
fp32 deploy (conv+BN fused, channels_last), fp32 compiled (inductor with freezing: the int8 path
without quantization), bf16 deploy, int8 (compiled) and ONNX Runtime (the fp32 ONNX export),
interleaved in one process (medians; ratios to fp32 eager per round).

    python benchmarks/quantize_check.py                       # every trained run found, 1 thread
    python benchmarks/quantize_check.py --runs fcn8s_mobilenetv2 deeplabv3plus_mobilenetv2

Runs are work_dirs/protocols/camvid-cpu/<name>/seed0 (config.yaml + checkpoints/last.pt, as the
protocol run leaves them). Results: benchmarks/results/quantize/<name>.json and quantize.md
(--table rewrites the Markdown from the JSONs). Where int8 is slower than half of fp32 eager, the
operators that dominate its time (torch.profiler, self CPU time) are recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RUNS = REPO / "work_dirs" / "protocols" / "camvid-cpu"
OUT = REPO / "benchmarks" / "results" / "quantize"
DEFAULT_RUNS = ("fcn8s_mobilenetv2", "deeplabv3plus_mobilenetv2", "fcn16s_mobilenetv2",
                "fcn32s_mobilenetv2", "fcn_mobilenetv2", "unet_mobilenetv2", "deeplabv2_mobilenetv2",
                "deeplabv3_mobilenetv2", "pspnet_mobilenetv2")
ROWS = ("fp32 eager", "fp32 deploy", "fp32 compiled", "bf16 deploy", "int8", "onnxruntime")


def compiled_fp32(model, example):
    """fp32 through inductor with freezing (conv+BN folded by inductor), as the int8 model runs."""
    from segzoo.export.quantize import inductor_freezing

    compiled = torch.compile(model, dynamic=False)

    def run(x):
        with torch.no_grad(), inductor_freezing():
            return compiled(x)
    run(example)
    return run


def profile_top(fn, x, rows: int = 12) -> list[dict]:
    """The operators with the most self CPU time over 3 calls of ``fn(x)``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            fn(x)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "self_ms_per_call": e.self_cpu_time_total / 3e3, "calls": e.count // 3,
             "share": e.self_cpu_time_total / total} for e in events[:rows]]


def check_run(name: str, args) -> dict:
    from segzoo.bench.machine import machine_info
    from segzoo.bench.onnx_runtime import ort_session
    from segzoo.bench.timing import paired_ratios, run_interleaved, summarize
    from segzoo.checkpoint import load_trained_model
    from segzoo.config import load_config
    from segzoo.export import export_onnx
    from segzoo.export.deploy import optimize_for_inference
    from segzoo.export.quantize import (
        Int8Model,
        calibration_images,
        classifier_convs,
        cpu_has_vnni,
        int8_metadata,
        load_int8,
        quantize_int8,
        save_int8,
    )
    from segzoo.export.quantize_cli import score_on_val

    run = RUNS / name / "seed0"
    ckpt = run / "checkpoints" / args.checkpoint
    cfg = load_config(run / "config.yaml")
    log = lambda s: print(f"[{name} {time.strftime('%H:%M:%S')}] {s}", flush=True)  # noqa: E731
    model, meta = load_trained_model(cfg, ckpt, "cpu")
    rec = {"run": str(run.relative_to(REPO)), "checkpoint": args.checkpoint, "model": cfg.model.name,
           "machine": machine_info("cpu"), "threads": args.threads, "calib": args.calib,
           "size": list(args.size), "repeats": args.repeats, "warmup": args.warmup,
           "command": "python " + " ".join(sys.argv)}
    import onnxruntime
    import torchao

    rec["versions"] = {"torchao": torchao.__version__, "onnxruntime": onnxruntime.__version__}

    t0 = time.perf_counter()
    calib = calibration_images(cfg, args.calib)
    keep = classifier_convs(model) if args.float_classifiers else []
    rec["keep_float"] = keep
    rec["reduce_range"] = (not cpu_has_vnni()) if args.reduce_range is None else args.reduce_range
    program = quantize_int8(model, calib, keep_float=keep, reduce_range=rec["reduce_range"])
    rec["quantize_s"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = save_int8(program, Path(tmp) / "model_int8.pt2", int8_metadata(cfg, meta, program, calib, keep))
        rec["int8_file_mb"] = path.stat().st_size / 2**20
        program, int8_meta = load_int8(path)
        rec["fp32_params_mb"] = sum(p.numel() * 4 for p in model.parameters()) / 2**20
        int8 = Int8Model(program, int8_meta, compile=True)
        log(f"quantized in {rec['quantize_s']:.0f} s ({rec['int8_file_mb']:.1f} MiB); evaluating")

        rec["fp32"] = score_on_val(model, cfg, meta)
        rec["int8"] = score_on_val(int8, cfg, meta)
        rec["miou_drop_points"] = 100 * (rec["fp32"]["mIoU"] - rec["int8"]["mIoU"])
        log(f"mIoU fp32 {100 * rec['fp32']['mIoU']:.2f}, int8 {100 * rec['int8']['mIoU']:.2f}")

        h, w = args.size
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(1))
        t0 = time.perf_counter()
        onnx_path = Path(tmp) / "model.onnx"
        exported = export_onnx(model, onnx_path, (h, w), sizes=[(h, w)])
        rec["onnx_max_abs_diff"] = exported["max_abs_diff"]
        session = ort_session(onnx_path, threads=args.threads)
        rec["onnx_export_s"] = time.perf_counter() - t0
        log(f"ONNX exported and verified in {rec['onnx_export_s']:.0f} s; compiling")

        deploy = optimize_for_inference(model)
        bf16 = optimize_for_inference(model, dtype="bf16")
        t0 = time.perf_counter()
        fp32c = compiled_fp32(deploy.model, x.contiguous(memory_format=torch.channels_last))
        int8(x)
        rec["compile_s"] = time.perf_counter() - t0

        def eager(t):
            with torch.inference_mode():
                return model(t)

        xn = x.numpy()
        fns = {"fp32 eager": eager, "fp32 deploy": deploy,
               "fp32 compiled": lambda t: fp32c(t.contiguous(memory_format=torch.channels_last)),
               "bf16 deploy": bf16, "int8": int8,
               "onnxruntime": lambda t: torch.from_numpy(session.run(["logits"], {"images": xn})[0])}
        ref = eager(x)
        rec["max_abs_diff_vs_fp32"] = {k: float((f(x).float() - ref).abs().max()) for k, f in fns.items()}
        rec["argmax_agreement_vs_fp32"] = {k: float((f(x).float().argmax(1) == ref.argmax(1)).float().mean())
                                           for k, f in fns.items()}
        log("timing")
        rec["load_average_start"] = machine_info("cpu")["load_average"]
        steps = [lambda f=f: f(x) for f in fns.values()]
        times = run_interleaved(steps, warmup=args.warmup, repeats=args.repeats, device=torch.device("cpu"))
        rec["load_average_end"] = machine_info("cpu")["load_average"]
        rec["latency"] = {k: {"seconds": summarize(t), "ratio_to_fp32_eager": paired_ratios(t, times[0])}
                          for k, t in zip(fns, times)}
        ratio = rec["latency"]["int8"]["ratio_to_fp32_eager"]["median"]
        log("latency ms: " + ", ".join(f"{k} {1e3 * v['seconds']['median']:.0f}" for k, v in rec["latency"].items())
            + f"; int8 / fp32 eager {ratio:.2f}")
        if ratio > 0.5 or args.profile:
            rec["profile"] = {"int8": profile_top(int8, x), "fp32 eager": profile_top(eager, x)}
    return rec


def cpu_flags() -> str:
    """Which of the int8 / bf16 instruction sets the CPU reports (``/proc/cpuinfo`` flags)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}"
                     for f in ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16"))


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def table(records: list[dict]) -> str:
    """The Markdown summary of the per-run JSONs."""
    if not records:
        return "no results\n"
    m = records[0]["machine"]
    lines = ["# int8 vs fp32 on CamVid val (camvid-cpu runs)\n",
             f"Machine: {m['cpu']} ({m['cpu_count']} cores, shared with other jobs), torch {m['torch']}, "
             f"torchao {records[0]['versions']['torchao']}, onnxruntime {records[0]['versions']['onnxruntime']}; "
             f"{records[0]['threads']} thread(s) for torch and onnxruntime; latency at "
             f"{records[0]['size'][0]}x{records[0]['size'][1]}, batch 1, {records[0]['repeats']} interleaved "
             f"rounds (medians; ratio: median of per-round ratios to fp32 eager). Calibration: "
             f"{records[0]['calib']} train images through the val pipeline. mIoU: the protocol's evaluation "
             f"(val resized to 180x240, scored at 360x480), 101 images.\n",
             f"CPU features: {cpu_flags()}.\n",
             "Commands: " + "; ".join(sorted({f"`{r['command']}`" for r in records})) + "\n",
             "| run | mIoU fp32 | mIoU int8 | drop (points) | " + " | ".join(f"{r} ms (x)" for r in ROWS)
             + " | int8 file MiB (fp32 weights MiB) | load avg (start / end) |",
             "|---|---|---|---|" + "---|" * len(ROWS) + "---|---|"]
    for r in records:
        cells = [f"{1e3 * r['latency'][k]['seconds']['median']:.0f} ({r['latency'][k]['ratio_to_fp32_eager']['median']:.2f})"
                 for k in ROWS]
        kept = ("all convs int8" if not r.get("keep_float") else "classifiers float32") + (
            ", 7-bit activations" if r.get("reduce_range") else ", 8-bit activations")
        lines.append(f"| {Path(r['run']).parent.name} ({kept}) | {pct(r['fp32']['mIoU'])} | {pct(r['int8']['mIoU'])} | "
                     f"{r['miou_drop_points']:.2f} | " + " | ".join(cells)
                     + f" | {r['int8_file_mb']:.1f} ({r['fp32_params_mb']:.1f}) | "
                     f"{r['load_average_start'][0]} / {r['load_average_end'][0]} |")
    lines.append("")
    for r in records:
        if "profile" in r:
            lines.append(f"**{Path(r['run']).parent.name}**, top operators by self CPU time (ms per forward, share):\n")
            for k, ops in r["profile"].items():
                lines.append(f"- {k}: " + "; ".join(f"`{o['op']}` {o['self_ms_per_call']:.1f} ({100 * o['share']:.0f}%)"
                                                    for o in ops[:6]))
            lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="camvid-cpu run names")
    p.add_argument("--checkpoint", default="last.pt")
    p.add_argument("--calib", type=int, default=32, help="calibration images (train split)")
    p.add_argument("--size", nargs=2, type=int, default=[360, 480], metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--profile", action="store_true", help="profile int8 and fp32 eager always")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                   help="7-bit activations (default: where the CPU has no VNNI)")
    p.add_argument("--float-classifiers", action="store_true",
                   help="keep the class-score convs in float32 (segzoo quantize --float-classifiers)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--table", action="store_true", help="only rewrite quantize.md from the JSONs")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        for name in args.runs:
            run = RUNS / name / "seed0"
            if not (run / "checkpoints" / args.checkpoint).is_file() or not (run / "metrics.json").is_file():
                print(f"[{name}] skipped: not trained yet (no {args.checkpoint} and metrics.json)", flush=True)
                continue
            rec = check_run(name, args)
            suffix = ("-float-classifiers" if args.float_classifiers else "") + (
                "" if rec["reduce_range"] else "-full-range")
            (args.out / f"{name}{suffix}.json").write_text(json.dumps(rec, indent=1))
            write_table(args.out)
    write_table(args.out)
    return 0


def write_table(out: Path) -> None:
    order = {n: i for i, n in enumerate(DEFAULT_RUNS)}
    records = sorted((json.loads(p.read_text()) for p in out.glob("*.json")),
                     key=lambda r: (order.get(Path(r["run"]).parent.name, 99), not r.get("reduce_range"),
                               bool(r.get("keep_float"))))
    (out / "quantize.md").write_text(table(records))


if __name__ == "__main__":
    sys.exit(main())
