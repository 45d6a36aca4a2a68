"""Tables and plots of the nuclei protocols (dsb2018-cpu, dsb2018-smoke), from result JSONs only.

``update_doc(protocol, results_dir, doc, img_dir)`` replaces the text between
``<!-- compare:<protocol>:start -->`` and ``<!-- compare:<protocol>:end -->`` of ``doc`` with:

* one row per model (mean ± sample std over its seeds when it has several): its task and how its instances were made (Mask R-CNN's own; the connected
  components of a semantic model's nucleus map; or contour decoding), the nucleus mask's
  foreground IoU / Dice / boundary IoU, COCO mask AP / AP50 / AP75, the DSB 2018 mAP, the merged
  nuclei (count and share of the val nuclei), params, GFLOPs, CPU latency (``latency.json`` of the
  results folder when present), training time;
* the comparison sentences (best semantic model by DSB mAP against Mask R-CNN and the contour
  row), computed from the same numbers;
* mask AP against nucleus IoU, marker area by latency (else GFLOPs):
  ``img_dir/comparison_<protocol>_ap_vs_iou.png``; and, if ``benchmarks/dsb_figure.py`` made it,
  the crowded val image with each model's instances (``img_dir/dsb2018_crowded.png``).
"""

from __future__ import annotations

import os
from pathlib import Path

from compare_report import fmt, load_latency, load_results, mean_std, train_minutes

from segzoo.bench.report import replace_section

FIGURE = "dsb2018_crowded.png"


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}"


def source(r: dict) -> str:
    """How the run's instances were made."""
    if r.get("task") == "instance" or r.get("arch") == "maskrcnn":
        return "Mask R-CNN"
    return "contour decoding" if "contour" in r["model"] else "connected components"


METRICS = ("fg_IoU", "fg_Dice", "fg_BIoU", "mask_AP", "mask_AP50", "mask_AP75", "dsb_mAP",
           "merged", "merged_frac")


def rows_of(results: list[dict], latency: dict | None) -> list[dict]:
    """One row per model (in the order first seen): ``seeds``, ``m`` (mean of each metric over the
    seeds), ``sd`` (sample std, None for one seed), cost columns (from the first seed's run)."""
    timed = (latency or {}).get("models", {})
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["model"], []).append(r)
    rows = []
    for model, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        r = rs[0]
        stats = {k: mean_std([x["metrics"].get(k) for x in rs]) for k in METRICS}
        on_image = timed.get(model, {})  # dsb_predict.py's latency and GFLOPs on one val image
        lat = r.get("latency_ms") or on_image.get("latency_ms")
        gflops, measured = r.get("gflops"), False
        if gflops is None and on_image.get("gflops") is not None:  # Mask R-CNN
            gflops, measured = on_image["gflops"], True
        minutes = mean_std([train_minutes(x) for x in rs])[0]
        rows.append({"model": model, "arch": r["arch"], "seeds": [x["seed"] for x in rs],
                     "source": source(r), "m": {k: v[0] for k, v in stats.items()},
                     "sd": {k: v[1] for k, v in stats.items()}, "params": r.get("params"),
                     "gflops": gflops, "gflops_on_image": measured, "latency_ms": lat, "train_min": minutes,
                     "iterations": r.get("iterations")})
    return rows


def _cell(r: dict, key: str) -> str:
    return fmt(r["m"].get(key), r.get("sd", {}).get(key))


def table(rows: list[dict]) -> str:
    head = ("| model | seeds | instances from | nucleus IoU | Dice | boundary IoU | mask AP | AP50 | AP75 | "
            "DSB mAP | merged nuclei | params (M) | GFLOPs @256x256 | CPU ms to instances | train steps (min) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        m = r["m"]
        count = "–" if m.get("merged") is None else fmt(m["merged"], r.get("sd", {}).get("merged"), scale=1.0,
                                                        digits=0)
        merged = count if m.get("merged_frac") is None else f"{count} ({_pct(m.get('merged_frac'))}%)"
        params = "–" if r["params"] is None else f"{r['params'] / 1e6:.1f}"
        gflops = "–" if r["gflops"] is None else f"{r['gflops']:.1f}" + ("\\*" if r.get("gflops_on_image") else "")
        lat = "–" if r["latency_ms"] is None else f"{r['latency_ms']:.0f}"
        cells = [_cell(r, k) for k in ("fg_IoU", "fg_Dice", "fg_BIoU", "mask_AP", "mask_AP50", "mask_AP75",
                                        "dsb_mAP")]
        lines.append(f"| {r['model']} | {','.join(map(str, r['seeds']))} | {r['source']} | "
                     + " | ".join(cells) + f" | {merged} | {params} | {gflops} | {lat} | {r['train_min']:.1f} |")
    return "\n".join(lines)


def findings(rows: list[dict]) -> list[str]:
    """Sentences comparing the best connected-components model, the contour row and Mask R-CNN,
    computed from the numbers (no conclusion is written by hand)."""
    def key(r: dict) -> float:
        return r["m"].get("dsb_mAP") if r["m"].get("dsb_mAP") is not None else -1.0

    plain = [r for r in rows if r["source"] == "connected components"]
    out = []
    if not plain:
        return out
    best = max(plain, key=key)
    by_iou = max(plain, key=lambda r: r["m"].get("fg_IoU") or -1.0)
    out.append(f"Among the semantic models scored by connected components, {best['model']} has the best "
               f"DSB mAP ({_pct(best['m'].get('dsb_mAP'))}) and {by_iou['model']} the best nucleus IoU "
               f"({_pct(by_iou['m'].get('fg_IoU'))}).")
    for other in [r for r in rows if r["source"] != "connected components"]:
        d_map = (other["m"].get("dsb_mAP") or 0) - (best["m"].get("dsb_mAP") or 0)
        d_iou = (other["m"].get("fg_IoU") or 0) - (best["m"].get("fg_IoU") or 0)
        mb, mo = best["m"].get("merged_frac"), other["m"].get("merged_frac")
        merged = "" if mb is None or mo is None else (
            f"; it merges {_pct(mo)}% of the nuclei against {_pct(mb)}%")
        out.append(f"{other['model']} ({other['source']}) scores {'+' if d_map >= 0 else '−'}"
                   f"{abs(100 * d_map):.1f} DSB mAP points and {'+' if d_iou >= 0 else '−'}"
                   f"{abs(100 * d_iou):.1f} nucleus IoU points against {best['model']}{merged}"
                   f"{_spread(best, other, d_map)}.")
    return out


def _spread(a: dict, b: dict, d_map: float) -> str:
    """How the DSB mAP difference compares with the seed-to-seed spread, when both rows have one."""
    sa, sb = (r.get("sd", {}).get("dsb_mAP") for r in (a, b))
    if sa is None or sb is None:
        return ""
    n = f"{len(b['seeds'])} and {len(a['seeds'])} seeds"
    within = "within" if abs(d_map) <= max(sa, sb) else "beyond"
    return (f" ({n}: the DSB mAP difference is {within} one seed std, {100 * sb:.1f} and "
            f"{100 * sa:.1f} points)")


def scatter(rows: list[dict], path: Path, title: str) -> str:
    """Mask AP against nucleus IoU; marker area by latency (else GFLOPs). Returns the size label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_latency = all(r["latency_ms"] is not None for r in rows)
    size_of = (lambda r: r["latency_ms"]) if by_latency else (lambda r: r["gflops"] or 1.0)
    biggest = max((size_of(r) for r in rows), default=1.0) or 1.0
    colours = {"connected components": "tab:blue", "contour decoding": "tab:green", "Mask R-CNN": "tab:red"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        x, y = r["m"].get("fg_IoU"), r["m"].get("mask_AP")
        if x is None or y is None:
            continue
        ax.scatter(100 * x, 100 * y, s=40 + 400 * size_of(r) / biggest, alpha=0.6, color=colours[r["source"]],
                   label=r["source"])
        ax.annotate(r["model"].replace("_mobilenetv2", ""), (100 * x, 100 * y), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="lower right")
    size_label = "CPU latency" if by_latency else "GFLOPs"
    ax.set_xlabel("nucleus IoU (%)")
    ax.set_ylabel("mask AP (%)")
    ax.set_title(f"{title} (marker area: {size_label})", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return size_label


def section(protocol: str, results: list[dict], doc: Path, img_dir: Path, latency: dict | None = None) -> str:
    if not results:
        return f"No results yet: run `python benchmarks/compare.py --protocol {protocol}`."
    rows = rows_of(sorted(results, key=lambda r: (r.get("task") == "instance", r["model"], r["seed"])), latency)
    r0 = results[0]
    commits = ", ".join(sorted({str(r["commit"]) for r in results if r.get("commit")})) or "unknown"
    parts = [f"{len(results)} runs of {len(rows)} models, {r0.get('iterations')} iterations each, on {r0.get('machine')} "
             f"(torch {r0.get('torch')}, {r0.get('threads')} thread per run; commits {commits}). "
             "Percentages on the 114 val images at their original sizes; `merged nuclei`: ground-truth "
             "nuclei whose best-matching prediction also covers half or more of another nucleus. A model "
             "run with several seeds shows mean ± sample std over them.",
             "", table(rows), ""]
    parts += [f"- {s}" for s in findings(rows)]
    if any(r.get("gflops_on_image") for r in rows):
        parts.append(f"- \\* GFLOPs counted on the latency image ({(latency or {}).get('image', '?')[:12]}…, "
                     "256x256) with trained weights: a detector's RoI-head cost depends on how many "
                     "objects it finds, so it has no input-independent count.")
    if latency:
        parts.append(f"- CPU latency (`benchmarks/dsb_predict.py`): {latency.get('what')}, trained weights, "
                     f"batch 1, {latency.get('threads')} thread, median of {latency.get('repeats')} interleaved "
                     f"rounds in one process; {latency.get('machine')}, {latency.get('date')}.")
    else:
        parts.append("- CPU latency: not measured yet (`python benchmarks/dsb_predict.py`); marker area "
                     "shows GFLOPs.")
    plot = img_dir / f"comparison_{protocol}_ap_vs_iou.png"
    size_label = scatter(rows, plot, f"{protocol}: mask AP vs nucleus IoU")
    rel = os.path.relpath(plot, doc.parent)
    parts += ["", f"![mask AP against nucleus IoU, marker area {size_label}]({rel})"]
    figure = img_dir / FIGURE
    if protocol == "dsb2018-cpu" and figure.is_file():
        parts += ["", f"![a crowded val image: each model's nuclei, one colour per instance]"
                      f"({os.path.relpath(figure, doc.parent)})"]
    return "\n".join(parts)


def update_doc(protocol: str, results_dir: Path, doc: Path, img_dir: Path) -> str:
    """Rewrite the protocol's generated section of ``doc`` (between ``<!-- compare:<protocol>:start -->``
    and ``<!-- compare:<protocol>:end -->``, appended if missing); returns that section."""
    body = section(protocol, load_results(results_dir), doc, img_dir, load_latency(results_dir))
    doc.parent.mkdir(parents=True, exist_ok=True)
    replace_section(doc, f"compare:{protocol}", body)
    return body
