"""Tables and plots of a protocol's comparison, from its result JSONs only (docs/comparison.md).

``update_doc(protocol, results_dir, doc, img_dir)`` replaces the text between
``<!-- compare:<protocol>:begin -->`` and ``<!-- compare:<protocol>:end -->`` in ``doc`` (appending
the section when the markers are missing) with:

* the summary table: per model, the number of seeds and mean ± sample standard deviation (n - 1)
  over seeds of val mIoU, mean class accuracy, pixel accuracy and boundary mIoU (percent), then
  parameters, GFLOPs, CPU latency (from ``latency.json`` of the results folder, written by
  ``benchmarks/protocol_latency.py``; else the JSONs' ``latency_ms``), training time and
  iterations;
* the per-class IoU table (mean over seeds) and its heat map
  ``img_dir/comparison_<protocol>_per_class_iou.png``;
* accuracy against CPU latency when every model has a latency, else against GFLOPs
  (``img_dir/comparison_<protocol>_accuracy.png``).

A protocol named ``<base>-ablations`` gets the papers' ablation table instead
(:mod:`ablation_report`), from its own results and those of ``<base>``.

Nothing here trains or times: the numbers are those of the committed JSONs.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

ABLATIONS_SUFFIX = "-ablations"
SUMMARY = (("mIoU", "mIoU"), ("mean_acc", "mean acc"), ("pixel_acc", "pixel acc"), ("mBIoU", "boundary mIoU"))


LATENCY_FILE = "latency.json"


def load_results(results_dir: Path) -> list[dict]:
    """Every ``*.json`` run result of the folder (sorted by file name; ``latency.json`` is not a
    run); none if the folder does not exist."""
    if not results_dir.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json")) if p.name != LATENCY_FILE]


def load_latency(results_dir: Path) -> dict | None:
    """The folder's ``latency.json`` (:mod:`protocol_latency`), or None."""
    path = results_dir / LATENCY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def apply_latency(rows: list[dict], latency: dict | None) -> None:
    """Fill each row's ``latency_ms`` (mean, std, n) from ``latency.json``'s median per model,
    where the run JSONs carry none."""
    timed = (latency or {}).get("models", {})
    for r in rows:
        if r["latency_ms"][0] is None and r["model"] in timed:
            r["latency_ms"] = (timed[r["model"]]["latency_ms"], None, 1)


def latency_note(latency: dict | None) -> str:
    """One sentence on how the latency column was measured."""
    if not latency:
        return ("CPU latency: not measured yet (`python benchmarks/protocol_latency.py` writes "
                "`latency.json` beside the results).")
    h, w = latency["size"]
    load = (latency.get("load_average") or {}).get("before")
    return (f"CPU latency: `benchmarks/protocol_latency.py`, batch {latency['batch']}, {h}x{w}, "
            f"{latency['threads']} torch thread(s), fp32 eager, random weights, median of "
            f"{latency['repeats']} interleaved rounds in one process after {latency['warmup']} warm-up "
            f"round(s); {latency['machine']}, torch {latency['torch']}, commit {latency['commit']}, "
            f"{latency['date']}" + (f", load average {load[0]} at the start (a shared machine)" if load else "")
            + ".")


def mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    """(mean, sample standard deviation or None for fewer than 2 values, n) of the non-null
    values; (None, None, 0) when there are none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None, None, 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None), len(xs)


def fmt(mean: float | None, std: float | None, scale: float = 100.0, digits: int = 1) -> str:
    """``"52.0 ± 2.0"`` (percent by default), ``"52.0"`` without a std, ``"–"`` without a value."""
    if mean is None:
        return "–"
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if std is not None else "")


def train_minutes(result: dict) -> float:
    """Minutes of a run's logged training steps (resume-safe: an attempt cut with its runner leaves
    no wall time); its attempts' wall time for results without step times; 0 when neither."""
    return (result.get("train_step_s") or result.get("train_wall_s") or 0) / 60


def aggregate(results: list[dict]) -> list[dict]:
    """One row per model (in the order first seen): seeds, and (mean, std) of every summary
    metric, per-class IoU, params, GFLOPs, latency, training time and iterations."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["model"], []).append(r)
    rows = []
    for model, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        classes = list((rs[0].get("per_class") or {}).get("IoU") or {})
        row = {"model": model, "arch": rs[0].get("arch"), "seeds": [r["seed"] for r in rs],
               "params": rs[0].get("params"), "gflops": rs[0].get("gflops"),
               "flops_size": rs[0].get("flops_size"), "iterations": rs[0].get("iterations"),
               "latency_ms": mean_std([r.get("latency_ms") for r in rs]),
               "train_min": mean_std([train_minutes(r) or None for r in rs]),
               "per_class": {c: mean_std([r["per_class"]["IoU"].get(c) for r in rs]) for c in classes}}
        for key, _ in SUMMARY:
            row[key] = mean_std([r["metrics"].get(key) for r in rs])
        rows.append(row)
    return rows


def summary_table(rows: list[dict]) -> str:
    size = next((r["flops_size"] for r in rows if r["flops_size"]), None)
    gf = f"GFLOPs @{size[0]}x{size[1]}" if size else "GFLOPs"
    head = (["model", "seeds"] + [name for _, name in SUMMARY]
            + ["params (M)", gf, "CPU latency (ms)", "train steps (min)", "iterations"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lat, tmin = r["latency_ms"], r["train_min"]
        cells = ([r["model"], ",".join(map(str, r["seeds"]))]
                 + [fmt(r[k][0], r[k][1]) for k, _ in SUMMARY]
                 + [f"{r['params'] / 1e6:.2f}" if r["params"] else "–",
                    f"{r['gflops']:.2f}" if r["gflops"] is not None else "–",
                    fmt(lat[0], lat[1], scale=1.0), fmt(tmin[0], tmin[1], scale=1.0, digits=0),
                    str(r["iterations"] or "–")])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_class_table(rows: list[dict]) -> str:
    classes = list(rows[0]["per_class"]) if rows else []
    lines = ["| model | " + " | ".join(classes) + " |", "|" + "---|" * (len(classes) + 1)]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(fmt(*r["per_class"][c][:2]) for c in classes) + " |")
    return "\n".join(lines)


def heatmap(rows: list[dict], path: Path, title: str) -> None:
    """Per-class IoU (percent, mean over seeds) as a models x classes heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    classes = list(rows[0]["per_class"])
    data = np.array([[np.nan if r["per_class"][c][0] is None else 100 * r["per_class"][c][0]
                      for c in classes] for r in rows])
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(classes), 1.2 + 0.45 * len(rows)))
    im = ax.imshow(data, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [r["model"] for r in rows])
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if not np.isnan(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if data[i, j] < 60 else "black")
    fig.colorbar(im, ax=ax, label="IoU (%)")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scatter(rows: list[dict], path: Path, title: str) -> str:
    """mIoU against CPU latency (all rows timed) or GFLOPs; returns the x-axis quantity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = all(r["latency_ms"][0] is not None for r in rows)
    xs = [r["latency_ms"][0] if timed else r["gflops"] for r in rows]
    xlabel = "CPU latency (ms)" if timed else "GFLOPs per image"
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for r, x in zip(rows, xs):
        m, s, _ = r["mIoU"]
        if m is None or x is None:
            continue
        ax.errorbar(x, 100 * m, yerr=100 * s if s else None, fmt="o", capsize=3)
        ax.annotate(r["model"], (x, 100 * m), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("val mIoU (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return xlabel


def section(protocol: str, results: list[dict], doc: Path, img_dir: Path,
            results_dir: Path | None = None) -> str:
    """The generated Markdown of one protocol (tables, figure links); ``results_dir`` is where
    ``latency.json`` is looked for."""
    if not results:
        return ("No finished runs yet: runs in progress (result JSONs appear in "
                f"`benchmarks/results/protocols/{protocol}/` as each run finishes).")
    rows = aggregate(results)
    latency = load_latency(results_dir) if results_dir is not None else None
    apply_latency(rows, latency)
    rel = Path(os.path.relpath(img_dir.resolve(), doc.parent.resolve()))
    heat = img_dir / f"comparison_{protocol}_per_class_iou.png"
    acc = img_dir / f"comparison_{protocol}_accuracy.png"
    heatmap(rows, heat, f"{protocol}: per-class val IoU (%)")
    xlabel = scatter(rows, acc, f"{protocol}: val mIoU vs {xlabel_short(rows)}")
    machines = sorted({r.get("machine") or "?" for r in results})
    commits = sorted({r.get("commit") or "?" for r in results})
    n_runs = len(results)
    return "\n".join([
        f"{n_runs} finished run(s) of {len(rows)} model(s); mean ± sample std over seeds where a "
        f"model has several. Machine: {'; '.join(machines)}. Commits: {', '.join(commits)}.",
        "",
        latency_note(latency),
        "",
        summary_table(rows),
        "",
        "Per-class val IoU (%), mean over seeds:",
        "",
        per_class_table(rows),
        "",
        f"![per-class IoU]({rel / heat.name})",
        "",
        f"![val mIoU against {xlabel}]({rel / acc.name})",
    ])


def xlabel_short(rows: list[dict]) -> str:
    return "CPU latency" if all(r["latency_ms"][0] is not None for r in rows) else "GFLOPs"


def update_doc(protocol: str, results_dir: Path, doc: Path, img_dir: Path) -> str:
    """Rewrite the protocol's generated section of ``doc``; returns that section."""
    if protocol.endswith(ABLATIONS_SUFFIX):
        import ablation_report

        base = protocol[:-len(ABLATIONS_SUFFIX)]
        body = ablation_report.section({"base": load_results(results_dir.parent / base),
                                        "ablations": load_results(results_dir)}, base)
    else:
        body = section(protocol, load_results(results_dir), doc, img_dir, results_dir)
    begin, end = f"<!-- compare:{protocol}:begin -->", f"<!-- compare:{protocol}:end -->"
    block = f"{begin}\n{body}\n{end}"
    text = doc.read_text() if doc.is_file() else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = (text.rstrip() + "\n\n" if text else "") + f"## Results: {protocol}\n\n{block}\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    return body
