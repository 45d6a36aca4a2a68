"""Learning curve of a camvid-cpu model: val mIoU against iterations, and the budget a target needs.

    python -m segzoo train configs/protocols/camvid-cpu/fcn8s_mobilenetv2.yaml \\
        --work-dir work_dirs/curves/camvid-cpu/fcn8s_mobilenetv2 \\
        --set train.max_iters=1600 train.eval_interval=200           # the run (resumable)
    python benchmarks/learning_curve.py work_dirs/curves/camvid-cpu/fcn8s_mobilenetv2 --target 0.58

Reads the ``val`` rows of the run's ``metrics.jsonl`` (one per ``train.eval_interval``), writes
``benchmarks/results/protocols/camvid-cpu-curve/<model>.json`` (iterations, mIoU, mBIoU, the thin
classes' IoU, the fit), the plot ``docs/img/learning_curve_<protocol>.png`` and the section between
``<!-- learning-curve:<protocol>:start -->`` and ``<!-- learning-curve:<protocol>:end -->`` of
docs/comparison.md.

The budget for ``--target``: a least-squares line of mIoU against log2(iterations) through the
second half of the curve. Every point comes from ONE run whose poly learning rate is still
decaying at that point, so this is an extrapolation of that run, not the curve of runs scheduled
for each budget; it is labelled as one and no target is claimed met from it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

THIN = ("pole", "sign_symbol", "pedestrian", "bicyclist")


def val_rows(run_dir: Path) -> list[dict]:
    """The run's evaluation rows, one per iteration (the last written wins after a resume)."""
    rows = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if r.get("mode") == "val":
                rows[r["iter"]] = r
    return [rows[k] for k in sorted(rows)]


def fit(iters: list[int], values: list[float]) -> tuple[float, float] | None:
    """(slope per doubling, intercept) of values against log2(iterations), or None (< 2 points)."""
    if len(iters) < 2:
        return None
    x = [math.log2(i) for i in iters]
    mx, my = sum(x) / len(x), sum(values) / len(values)
    sxx = sum((a - mx) ** 2 for a in x)
    if sxx == 0:
        return None
    slope = sum((a - mx) * (b - my) for a, b in zip(x, values)) / sxx
    return slope, my - slope * mx


def budget(line: tuple[float, float] | None, target: float) -> int | None:
    """Iterations at which the fitted line reaches ``target`` (None if it never rises)."""
    if line is None or line[0] <= 0:
        return None
    return int(round(2 ** ((target - line[1]) / line[0])))


def curve(run_dir: Path, target: float) -> dict:
    rows = val_rows(run_dir)
    if not rows:
        raise SystemExit(f"learning_curve.py: no val rows in {run_dir / 'metrics.jsonl'}; train with "
                         "train.eval_interval > 0")
    iters = [r["iter"] for r in rows]
    miou = [r["mIoU"] for r in rows]
    half = len(rows) // 2
    line = fit(iters[half:], miou[half:])
    return {"run": os.path.relpath(run_dir, REPO), "iterations": iters, "mIoU": miou,
            "mBIoU": [r.get("mBIoU") for r in rows],
            "thin_IoU": {c: [r.get("IoU", {}).get(c) for r in rows] for c in THIN},
            "fit": None if line is None else {"per_doubling": line[0], "intercept": line[1],
                                              "through_iterations": iters[half:]},
            "target": target, "extrapolated_iterations": budget(line, target)}


def plot(result: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    it = result["iterations"]
    ax.plot(it, [100 * v for v in result["mIoU"]], "o-", label="val mIoU")
    for c in THIN:
        ax.plot(it, [100 * (v or 0) for v in result["thin_IoU"][c]], ".--", lw=0.8, label=f"{c} IoU")
    f = result["fit"]
    if f:
        end = max(it[-1], result["extrapolated_iterations"] or it[-1])
        xs = [it[len(it) // 2], end]
        ax.plot(xs, [100 * (f["intercept"] + f["per_doubling"] * math.log2(x)) for x in xs], ":", color="grey",
                label="log-linear fit (extrapolation)")
    ax.axhline(100 * result["target"], color="red", lw=0.8, label=f"target {100 * result['target']:.0f}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("iterations (batch 4)")
    ax.set_ylabel("IoU (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(name: str, result: dict, plot_rel: str) -> str:
    head = "| iterations | " + " | ".join(str(i) for i in result["iterations"]) + " |"
    lines = [head, "|" + "---|" * (len(result["iterations"]) + 1),
             "| val mIoU | " + " | ".join(f"{100 * v:.1f}" for v in result["mIoU"]) + " |"]
    for c in THIN:
        lines.append(f"| {c} IoU | " + " | ".join("–" if v is None else f"{100 * v:.1f}"
                                                 for v in result["thin_IoU"][c]) + " |")
    f, need = result["fit"], result["extrapolated_iterations"]
    text = [f"`{name}`, one run evaluated every {result['iterations'][0]} iterations ({result['run']}):", "",
            *lines, ""]
    if f:
        text.append(f"Over the second half of the curve mIoU gains {100 * f['per_doubling']:.1f} points per "
                    "doubling of the iterations. " + (
                        f"Extrapolated on that line, {100 * result['target']:.0f} mIoU would need about "
                        f"{need} iterations ({need / result['iterations'][-1]:.1f}x this run)."
                        if need else "On that line the target is not reached at any budget.")
                    + " An extrapolation of one run's curve, not a measurement.")
    text += ["", f"![learning curve]({plot_rel})"]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    from segzoo.bench.report import replace_section

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--protocol", default="camvid-cpu")
    p.add_argument("--target", type=float, default=0.58, help="mIoU target as a fraction")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "comparison.md")
    p.add_argument("--results-dir", type=Path)
    p.add_argument("--img", type=Path)
    args = p.parse_args(argv)
    name = args.run_dir.name
    result = curve(args.run_dir, args.target)
    out_dir = args.results_dir or REPO / "benchmarks" / "results" / "protocols" / f"{args.protocol}-curve"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    img = args.img or REPO / "docs" / "img" / f"learning_curve_{args.protocol}.png"
    plot(result, img, f"{args.protocol}: {name}")
    replace_section(args.doc, f"learning-curve:{args.protocol}",
                    section(name, result, os.path.relpath(img, args.doc.parent)))
    print(json.dumps({k: result[k] for k in ("iterations", "mIoU", "extrapolated_iterations")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
