"""Markdown for ``segzoo bench`` results, and replacing a generated section of a docs page."""

from __future__ import annotations

import re
from pathlib import Path


def _ms(s: dict | None) -> str:
    if not s:
        return "n/a"
    return f"{s['median'] * 1e3:.0f} [{s['p25'] * 1e3:.0f}-{s['p75'] * 1e3:.0f}]"


def _ratio(r: dict | None) -> str:
    if not r:
        return "n/a"
    return f"{r['median']:.2f} [{r['p25']:.2f}-{r['p75']:.2f}]"


def _num(x, fmt: str = "{:.1f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _err(job: dict | None) -> str | None:
    """A failed job's error as one short table cell (its last line, no ``|``)."""
    err = job.get("error") if isinstance(job, dict) else None
    if not err:
        return None
    last = err.split(" | ")[-1].strip().replace("|", "/")
    return "failed: " + (last if len(last) <= 90 else last[:87] + "...")


def _cand(job: dict | None, i: int = 0) -> dict | None:
    if not job or "error" in job or "skipped" in job:
        return None
    return job["candidates"][i]


def row_jobs(row: dict) -> dict[str, dict]:
    """The measurements of a models-table row that ran (or were skipped), by name: ``inference
    b<batch>`` per batch, ``train``, ``deploy``, ``onnxruntime``."""
    jobs = {f"inference b{b}": job for b, job in (row.get("infer") or {}).items()}
    jobs.update({k: row.get(k) for k in ("train", "deploy", "onnxruntime")})
    return {what: job for what, job in jobs.items() if isinstance(job, dict)}


def failures(results: dict) -> list[str]:
    """Every measurement of a run that failed, one ``"<what>: <error>"`` line each: a model that
    could not be built, a timing job (inference per batch, training step, deploy, onnxruntime)
    or a peer pair's run. Skipped measurements (an instance model has no ONNX export) and peers
    that are not ready (a library not installed) are not failures."""
    out = []
    for row in results.get("models", []):
        if "error" in row:
            out.append(f"{row['label']}: {row['error']}")
            continue
        out += [f"{row['label']} {what}: {job['error']}" for what, job in row_jobs(row).items()
                if "error" in job]
    for p in results.get("peers", []):
        run = p.get("run")
        if isinstance(run, dict) and "error" in run:
            out.append(f"peer {p['key']}: {run['error']}")
    return out


def ratio_of(job: dict | None, a: int, b: int) -> dict | None:
    """The per-round ratio summary of candidate ``a`` over ``b`` in a worker result."""
    if not job or "error" in job:
        return None
    for r in job["ratios"]:
        if (r["a"], r["b"]) == (a, b):
            return r["a_over_b"]
        if (r["a"], r["b"]) == (b, a):
            inv = {k: 1 / v for k, v in r["a_over_b"].items() if k in ("median", "p25", "p75", "min", "max")}
            return {"median": inv["median"], "p25": inv["p75"], "p75": inv["p25"], "min": inv["max"],
                    "max": inv["min"], "n": r["a_over_b"]["n"]}
    return None


def _deploy_agreement(job: dict) -> str:
    """How the deploy variant's outputs agree with eager: the largest |logit difference|, or for
    a detector the matched detections (score >= 0.5; see ``worker.compare_outputs``)."""
    det = next(iter((job.get("deploy_detections") or {}).values()), None)
    if det is not None:
        return (f"{det['detections']} matched, {det['unmatched_ref']}/{det['unmatched_got']} unmatched, "
                f"box diff {det['box_diff']:.1g} px, mask IoU >= {det['mask_iou_decided']:.3f}")
    diff = max((job.get("deploy_max_abs_diff") or {"": float("nan")}).values())
    return f"diff {diff:.0e}"


def deploy_settings(s: dict) -> str:
    """The deploy variant's settings, for the report's header."""
    parts = ["conv+BN fused", "channels_last", f"autocast {s.get('deploy_dtype') or s['dtype']}"]
    if s.get("deploy_compile"):
        parts.append(f"torch.compile mode {s['deploy_compile']} (a detector: its backbone)")
    return ", ".join(parts)


def machine_lines(results: dict) -> list[str]:
    m = results["machine"]
    s = results["settings"]
    gpu = m.get("gpu") or "none (CPU only)"
    if m.get("gpu") and m.get("gpu_memory_gib"):
        gpu += (f" ({m['gpu_memory_gib']} GiB, driver {m.get('gpu_driver')}, CUDA {m.get('cuda')}, "
                f"cuDNN {m.get('cudnn')}, TF32 {m.get('tf32')})")
    libs = ", ".join(f"{k} {m[k]}" for k in ("torch", "torchvision", "timm", "segmentation_models_pytorch")
                     if m.get(k))
    return [
        f"* Machine: host `{m['host']}`, {m['cpu']}, {m['cpu_count']} logical cores, "
        f"{s.get('threads') or m['torch_threads']} torch threads; GPU: {gpu}; device `{s['device']}`.",
        f"* Versions: Python {m['python']}, {libs}; segzoo commit {m.get('segzoo_commit') or 'n/a'}.",
        f"* Date: {m['date']}; load average (1/5/15 min) at the start {m.get('load_average')}, "
        f"at the end {m.get('load_average_end')}.",
        f"* Settings: input {s['size'][0]}x{s['size'][1]}, batches {s['batches']}, dtype {s['dtype']}, "
        f"{s['warmup']} warm-up + {s['repeats']} timed runs (larger batches "
        f"{s.get('large_batch_repeats') or s['repeats']}), training step at batch {s['train_batch']} "
        f"({s.get('train_repeats') or s['repeats']} runs), {s['num_classes']} classes.",
        *([f"* Deploy variant: {deploy_settings(s)}."] if s.get("deploy") else []),
    ]


def best_matmul_gflops(results: dict) -> float | None:
    """The fastest matmul GFLOP/s measured in any worker of the run (every worker measures before
    and after its model): the machine's practical peak. A single worker's figure can be low when
    the shared cores were busy during its measurement, which would put a latency below its floor."""
    speeds = []
    for row in results.get("models", []):
        for job in row_jobs(row).values():
            if "error" not in job:
                speeds += [g for g in job.get("matmul_gflops_before_after") or [job.get("matmul_gflops")] if g]
    return max(speeds) if speeds else None


def _variant_speedup(job: dict | None, variant: str) -> str:
    """eager / variant latency of a [eager, variant] job, with the largest output difference."""
    if not _cand(job):
        return _err(job) or (f"n/a ({job['skipped']})" if job and "skipped" in job else "-")
    diff = max((job.get(f"{variant}_max_abs_diff") or {"": float("nan")}).values())
    return f"{_ratio(ratio_of(job, 0, 1))}x (diff {diff:.0e})"


def models_table(results: dict) -> str:
    peak = best_matmul_gflops(results)
    batches = results["settings"]["batches"]
    big = [b for b in batches if b != 1]
    head = ["model", "params (M)", "GFLOPs", "b1 latency ms (median [IQR])", "b1 img/s",
            *(f"b{b} img/s" for b in big), "floor ms", "x floor",
            f"train step ms (b{results['settings']['train_batch']})", "peak RSS MiB (before fwd)",
            "deploy speedup"]
    ort = any("onnxruntime" in row for row in results["models"])
    if ort:
        head.append("onnxruntime speedup")
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for row in results["models"]:
        if "error" in row:
            lines.append(f"| `{row['label']}` | " + " | ".join(["-"] * (len(head) - 2)) + f" | {row['error']} |")
            continue
        b1 = row["infer"].get("1") if row.get("infer") else None
        c1 = _cand(b1)
        med = c1["seconds"]["median"] if c1 else None
        floor = row["gflops"] / peak * 1e3 if c1 and row.get("gflops") and peak else None
        cells = [f"`{row['label']}`", f"{row['params'] / 1e6:.1f}", _num(row.get("gflops")),
                 _ms(c1["seconds"]) if c1 else (_err(b1) or "n/a"),
                 _num(1 / med if med else None, "{:.2f}")]
        for b in big:
            cb = _cand(row["infer"].get(str(b)))
            cells.append(_num(b / cb["seconds"]["median"] if cb else None, "{:.2f}"))
        cells += [_num(floor, "{:.0f}"), _num(med * 1e3 / floor if floor and med else None, "{:.2f}")]
        ct = _cand(row.get("train"))
        cells.append(_ms(ct["seconds"]) if ct else (_err(row.get("train")) or "-"))
        if c1 and b1.get("cuda_peak_mb") is not None:
            cells.append(f"{b1['cuda_peak_mb']:.0f} (CUDA)")
        else:
            cells.append(f"{b1['peak_rss_mb']:.0f} ({b1['rss_before_mb']:.0f})" if c1 and b1.get("rss_before_mb") else "n/a")
        dep = row.get("deploy")
        if _cand(dep):
            cells.append(f"{_ratio(ratio_of(dep, 0, 1))}x ({_deploy_agreement(dep)})")
        else:
            cells.append(_err(dep) or "-")
        if ort:
            cells.append(_variant_speedup(row.get("onnxruntime"), "onnxruntime"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def peers_table(results: dict) -> str:
    deploy = results["settings"]["deploy"]
    head = ["peer", "relation", "params ours / peer (M)", "GFLOPs ours / peer", "ours ms", "peer ms",
            "ours / peer (median [IQR])", *(["ours deploy / peer"] if deploy else []),
            "max abs output diff", "load avg"]
    lines = ["| " + " | ".join(head) + " |", "|---|---" + "|---:" * (len(head) - 2) + "|"]
    for p in results["peers"]:
        rel = "equal" if p["relation"] == "equal" else (
            "similar, not equal" if p["relation"] == "similar" else p["relation"])
        if p["status"] != "ready":
            lines.append(f"| {p['key']} | {rel} | " + " | ".join(["-"] * (len(head) - 3)) +
                         f" | not timed: {p['status']} |")
            continue
        run = p.get("run", {})
        oc, pc = p["ours_counts"], p["peer_counts"]
        if "error" in run:
            lines.append(f"| {p['key']} | {rel} | " + " | ".join(["-"] * (len(head) - 3)) + f" | {run['error']} |")
            continue
        diff = run.get("output_max_abs_diff")
        cells = [p["key"], rel,
                 f"{oc.get('params', 0) / 1e6:.2f} / {pc.get('params', 0) / 1e6:.2f}",
                 f"{_num(oc.get('gflops'))} / {_num(pc.get('gflops'))}",
                 _ms(run["candidates"][0]["seconds"]), _ms(run["candidates"][1]["seconds"]),
                 _ratio(ratio_of(run, 0, 1))]
        if deploy:
            cells.append(_ratio(ratio_of(run, 2, 1)) + f" ({_deploy_agreement(run)})"
                         if len(run["candidates"]) > 2 else "-")
        cells += [f"{diff:.1e} (of {run['output_max_abs']:.1f})" if diff is not None else "-",
                  str((run.get("load_average") or {}).get("start"))]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"* **{p['key']}**: {p['note']}" for p in results["peers"] if p.get("note")]
    return "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "")


def markdown(results: dict) -> str:
    """The whole report of one ``segzoo bench`` run."""
    s = results["settings"]
    parts = [
        "# segzoo bench results",
        "",
        *machine_lines(results),
        f"* Command: `{s.get('command') or 'segzoo bench'}`",
        "",
        "Latencies are the median and interquartile range of the timed runs after warm-up, each "
        + ("measurement in the bench process itself (`--in-process`), " if s.get("in_process") else
           "measurement in a fresh process (`python -m segzoo.bench.worker`), ")
        + "eval mode under "
        "`torch.inference_mode`. GFLOPs per image from `torch.utils.flop_counter` (FLOPs = 2 x "
        "multiply-accumulates of convolutions and matrix products). The floor is GFLOPs divided by "
        "the machine's matmul speed (a 2048x2048 product on CPU, 8192x8192 on CUDA, timed in every "
        "worker before and after its model; the fastest of the run is used); "
        "`x floor` = latency / floor. Peak RSS is the worker's `ru_maxrss` at batch 1 (the "
        "interpreter and libraries included; in brackets the RSS after building the model, before "
        "the first forward); on CUDA the column holds `torch.cuda.max_memory_allocated` of the "
        "timed runs instead. CUDA timings synchronize the device before and after each run. "
        "The training step is forward + cross-entropy + backward + SGD step. "
        "Deploy speedup = eager / deploy latency (conv+BN fused, channels_last; "
        "`segzoo.export.deploy.optimize_for_inference`), from runs interleaved in one process; "
        "onnxruntime speedup likewise for the model exported to ONNX (`segzoo.export.export_onnx`, "
        "dynamic sizes, float32) run by onnxruntime's CPU provider with as many intra-op threads as "
        "torch (`--onnxruntime`; diff: largest |logit difference| from eager on the timed input).",
        "",
        "## Models",
        "",
        models_table(results),
    ]
    if results.get("peers"):
        parts += [
            "",
            "## Against torchvision and smp",
            "",
            "Each pair ran in one process, ours and the peer alternating (order rotated every "
            "round); the ratio is the median of the per-round ratios ours / peer (< 1: ours is "
            "faster). `equal` pairs have the same layers and parameter count: the peer's weights "
            "(BN statistics randomised) were copied into ours and the outputs compared on the timed "
            "input. `similar, not equal` pairs differ as noted; their ratio compares two designs.",
            "",
            peers_table(results),
        ]
    return "\n".join(parts) + "\n"


def replace_section(path: str | Path, name: str, text: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``
    (appending the marked section if absent; creating the file if missing)."""
    path = Path(path)
    doc = path.read_text() if path.exists() else ""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: block, doc)
    else:
        doc = doc.rstrip() + ("\n\n" if doc else "") + block + "\n"
    path.write_text(doc)
