"""The GPU check's real-data step: CamVid at full 480x360 trained for a fixed time budget on the
GPU, then scored on the 101 val images: the iterations/s and mIoU a GPU user would see.

    SEGZOO_DATA=.gpu_data python benchmarks/gpu_camvid.py --budget 90 --out $OUT     # on a GPU
    python benchmarks/gpu_camvid.py --device cpu --quick --data /tmp/pack --out /tmp/x  # dry run

1. A probe run of ``--probe-iters`` iterations (one val image) measures the seconds per
   iteration after the first logged window (cuDNN autotuning, worker start-up).
2. The real run trains ``max_iters = budget / seconds per iteration`` iterations, so that the
   poly schedule ends where the time does, then evaluates on the whole val split at full size.

``--iters N`` skips the probe and trains N iterations: where the rate is known (about 0.042 s per
iteration on an H200, benchmarks/results/gpu-h200/), it saves the probe's minute of start-up.

Both runs are ``segzoo train`` of ``--config`` (default: DeepLab v3+ MobileNetV2, the zoo's best
CamVid model, with the camvid-cpu recipe at full resolution, bf16, channels_last) on the CamVid
pack that ``benchmarks/pack_camvid.py`` writes (JPEG images; the shared data folder does not
travel to a GPU machine), with ``SEGZOO_DATA`` pointed at ``--data``. Writes ``gpu_camvid.json``
and ``gpu_camvid.md`` into ``--out``, also when the real run stops early (SIGINT, as at the GPU
check's step limit: its training figures up to the last logged window, no evaluation); the exit
status is that of the first run that fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/deeplabv3plus/deeplabv3plus_mobilenetv2_camvid-gpu-480x360.yaml"
QUICK = ["data.train.transforms=[{name: resize, size: [48, 64]}]", "data.val.transforms=[{name: resize, size: [48, 64]}]",
         "data.train.batch_size=2", "data.val.batch_size=2", "data.num_workers=0", "train.amp=null",
         "train.channels_last=false", "model.weights_backbone=null"]


def train(config: str, work_dir: Path, overrides: list[str], env: dict) -> tuple[int, float]:
    """``segzoo train`` in a child process; (exit status, wall seconds). SIGINT is ignored here
    while the child runs: the child, in the same process group (Ctrl-C, or gpu_check.sh's step
    limit), gets it too, stops at the end of its iteration and saves, and this script then writes
    what was measured."""
    cmd = [sys.executable, "-m", "segzoo", "train", config, "--work-dir", str(work_dir), "--set", *overrides]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, cwd=ROOT, env=env) as proc:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            rc = proc.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
    return rc, time.perf_counter() - t0


def train_rows(work_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (work_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("mode") == "train" and "iter_time" in r]


def seconds_per_iter(rows: list[dict]) -> float:
    """Median iteration time of the logged windows after the first (warm-up) one."""
    times = [r["iter_time"] for r in rows[1:]] or [r["iter_time"] for r in rows]
    return statistics.median(times)


def markdown(res: dict) -> str:
    m, v = res["machine"], res.get("val") or {}
    where = (f"{m['gpu']} (driver {m.get('gpu_driver')}, CUDA {m.get('cuda')})" if m.get("gpu")
             else f"{m['cpu']}, {m['cpu_count']} cores (no GPU)")
    lines = ["# CamVid at full resolution on the GPU, time-budgeted", "",
             f"* Machine: {where}; torch {m['torch']}; {m['date']}; segzoo {m.get('segzoo_commit')}.",
             f"* Command: `{res['command']}`; config `{res['config']}`.",
             (f"* Budget {res['budget_s']:.0f} s of training: probe {res['probe_iters']} iterations at "
              f"{res['probe_s_per_iter']:.3f} s/iteration -> {res['max_iters']} iterations."
              if res.get("probe_s_per_iter") else f"* {res['max_iters']} iterations (`--iters`), no probe."),
             *([f"* **Stopped** (exit {res['stopped']['exit']}) after iteration {res['stopped']['iteration']}: "
                "training figures up to there, no evaluation."] if res.get("stopped") else []), "",
             "| iterations | run wall s (start, training, evaluation) | s / iteration | img/s | data s / iteration | peak GPU MiB | val mIoU | "
             "pixel acc | boundary mIoU |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| {res['max_iters']} | {res['train_wall_s']:.0f} | {res.get('s_per_iter', float('nan')):.3f} | "
             f"{res.get('img_per_s', float('nan')):.1f} | {res.get('data_s_per_iter', float('nan')):.3f} | "
             f"{res.get('peak_mib') or 'n/a'} | {100 * v.get('mIoU', float('nan')):.2f} | "
             f"{100 * v.get('pixel_acc', float('nan')):.2f} | {100 * v.get('mBIoU', float('nan')):.2f} |"]
    if v.get("IoU"):
        lines += ["", "Per-class val IoU (%): " + ", ".join(f"{k} {100 * x:.1f}" for k, x in v["IoU"].items())]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=CONFIG)
    p.add_argument("--budget", type=float, default=90.0, help="seconds of training in the real run")
    p.add_argument("--probe-iters", type=int, default=30)
    p.add_argument("--iters", type=int, help="train this many iterations, no probe (--budget then unused)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--data", default=".gpu_data", help="the pack (SEGZOO_DATA); default .gpu_data")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="more config overrides")
    p.add_argument("--quick", action="store_true", help="64x48 crops, no amp, tiny budget (a CPU dry run)")
    p.add_argument("--work-dir", help="default: a temporary folder, removed afterwards")
    p.add_argument("--out", default="benchmarks/results/gpu-camvid")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from segzoo.bench.machine import machine_info

    data = Path(args.data).resolve()
    if not (data / "camvid" / "train.txt").is_file():
        print(f"gpu_camvid: no CamVid pack at {data} (run benchmarks/pack_camvid.py --out {args.data} "
              "here and carry it)", file=sys.stderr)
        return 2
    env = {**os.environ, "SEGZOO_DATA": str(data), "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if args.quick:
        args.budget, args.probe_iters = min(args.budget, 4.0), 3
    log_every = 1 if args.quick else 10
    base = [f"train.device={args.device}", f"train.log_interval={log_every}", "train.eval_interval=0",
            "train.num_vis=0", *(QUICK if args.quick else []), *args.set]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = None if args.work_dir else tempfile.TemporaryDirectory(prefix="segzoo-gpu-camvid-")
    work = Path(args.work_dir or tmp.name)
    res = {"machine": machine_info(args.device), "command": "python " + " ".join(sys.argv),
           "config": args.config, "budget_s": args.budget, "probe_iters": args.probe_iters,
           "data": json.loads((data / "pack.json").read_text()) if (data / "pack.json").is_file() else None}
    try:
        if args.iters:
            res.update(budget_s=None, probe_iters=0, max_iters=args.iters)
        else:
            rc, _ = train(args.config, work / "probe", base + [f"train.max_iters={args.probe_iters}",
                          f"train.checkpoint_interval={args.probe_iters}", "data.val.dataset.max_images=1"], env)
            if rc != 0:
                print(f"gpu_camvid: the probe run failed (exit {rc})", file=sys.stderr)
                return rc
            res["probe_s_per_iter"] = seconds_per_iter(train_rows(work / "probe"))
            res["max_iters"] = max(args.probe_iters, int(args.budget / res["probe_s_per_iter"]))
        rc, wall = train(args.config, work / "run", base + [f"train.max_iters={res['max_iters']}"], env)
        res["train_wall_s"] = wall  # includes start-up and the final evaluation
        rows = train_rows(work / "run") if (work / "run" / "metrics.jsonl").is_file() else []
        if rc != 0:
            print(f"gpu_camvid: the run failed (exit {rc})", file=sys.stderr)
            if not rows:
                return rc
            res["stopped"] = {"exit": rc, "iteration": rows[-1]["iter"]}  # what it measured until then
        res["s_per_iter"] = seconds_per_iter(rows)
        res["img_per_s"] = statistics.median(r["img_per_s"] for r in rows[1:] or rows)
        res["data_s_per_iter"] = statistics.median(r["data_time"] for r in rows[1:] or rows)
        peaks = [r["mem_mb"] for r in rows if "mem_mb" in r]  # CUDA peak per logged window
        res["peak_mib"] = round(max(peaks)) if peaks else None
        res["losses"] = [[r["iter"], r["loss"]] for r in rows]
        if rc == 0:
            res["val"] = json.loads((work / "run" / "metrics.json").read_text())
        (out / "gpu_camvid.json").write_text(json.dumps(res, indent=1))
        (out / "gpu_camvid.md").write_text(markdown(res))
        print(markdown(res))
        return rc
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
