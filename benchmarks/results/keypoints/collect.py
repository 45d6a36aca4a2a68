"""Collect finished Keypoint R-CNN runs (segzoo train run folders) into results.json + results.md.

    python benchmarks/results/keypoints/collect.py NAME=RUN_DIR[:COMMAND_FILE] ... --out DIR

Reads each run folder's config.yaml, metrics.jsonl (training losses and the evaluation curve) and
train.log (wall time from its first to its last timestamp); names the machine (lscpu model
name, logical cores, torch / torchvision versions, the run's torch threads from OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
from datetime import datetime
from pathlib import Path

import torch
import torchvision
import yaml

KEYS = ("kp_AP", "kp_AP50", "kp_AP75", "kp_APm", "kp_APl", "bbox_AP", "bbox_AP50", "bbox_AP75")


def machine(threads: int) -> dict:
    model = "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), model)
    except OSError:
        pass
    return {"cpu": model, "logical_cores": os.cpu_count(), "torch_threads": threads, "gpu": None,
            "torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version()}


def wall_minutes(log: Path) -> float:
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log.read_text(), flags=re.M)
    first, last = (datetime.fromisoformat(s) for s in (stamps[0], stamps[-1]))
    return round((last - first).total_seconds() / 60, 1)


def run_record(name: str, run: Path, command: str) -> dict:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    train = [r for r in rows if r["mode"] == "train"]
    curve = [{"iter": r["iter"], **{k: r.get(k) for k in KEYS}} for r in rows if r["mode"] == "val"]
    losses = [{"iter": r["iter"], "loss": r["loss"], "loss_keypoint": r["loss_keypoint"]} for r in train]
    return {"name": name, "run_dir": str(run), "command": command,
            "train_split": cfg["data"]["train"]["dataset"].get("split"),
            "eval_split": cfg["data"]["val"]["dataset"].get("split"),
            "model": {k: cfg["model"][k] for k in cfg["model"] if k != "name"} | {"name": cfg["model"]["name"]},
            "optimizer": cfg["optimizer"], "scheduler": cfg["scheduler"], "max_iters": cfg["train"]["max_iters"],
            "batch_size": cfg["data"]["train"]["batch_size"], "wall_minutes": wall_minutes(run / "train.log"),
            "mean_iter_time_s": round(sum(r["iter_time"] for r in train) / max(len(train), 1), 2),
            "eval_curve": curve, "final": curve[-1] if curve else None, "train_losses": losses}


def markdown(records: list[dict], mach: dict, notes: list[str]) -> str:
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}"  # noqa: E731
    out = ["# Keypoint R-CNN on coco_mini (CPU)", "",
           f"* Machine: {mach['cpu']}, {mach['logical_cores']} logical cores shared with other jobs, "
           f"{mach['torch_threads']} torch thread(s) per run, no GPU; torch {mach['torch']}, torchvision "
           f"{mach['torchvision']}, Python {mach['python']}.",
           "* AP in percent (COCO: kp_AP over OKS 0.50:0.05:0.95 with maxDets 20, box AP over IoU "
           "0.50:0.95).", *(f"* {n}" for n in notes), ""]
    for r in records:
        out += [f"## {r['name']}", "", f"`{r['command']}`", "",
                f"Trained on `{r['train_split']}`, evaluated on `{r['eval_split']}`; {r['max_iters']} iterations "
                f"of {r['batch_size']} images, {r['wall_minutes']} min wall ({r['mean_iter_time_s']} s per "
                "iteration, evaluations excluded).", "",
                "| iter | kp_AP | kp_AP50 | kp_AP75 | kp_APm | kp_APl | bbox_AP | bbox_AP50 | bbox_AP75 |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        out += [f"| {c['iter']} | " + " | ".join(pct(c[k]) for k in KEYS) + " |" for c in r["eval_curve"]]
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="NAME=RUN_DIR[:COMMAND_FILE]")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--note", action="append", default=[], help="a line for the Markdown header")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = ap.parse_args()
    records = []
    for spec in args.runs:
        name, rest = spec.split("=", 1)
        run, _, cmd_file = rest.partition(":")
        command = Path(cmd_file).read_text().strip() if cmd_file else ""
        records.append(run_record(name, Path(run), command))
    mach = machine(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"machine": mach, "notes": args.note, "runs": records}, indent=1) + "\n")
    (args.out / "results.md").write_text(markdown(records, mach, args.note) + "\n")


if __name__ == "__main__":
    main()
