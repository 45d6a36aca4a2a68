"""One measurement in a fresh process: ``python -m segzoo.bench.worker JOB.json OUT.json``.

A fresh process per measurement makes its peak resident memory (``ru_maxrss``) that of the model
alone (plus the interpreter, torch and the libraries). JOB holds:

* ``candidates``: :class:`~segzoo.bench.candidates.Candidate` dicts, timed interleaved;
* ``mode``: ``"infer"`` or ``"train"``; ``batch``, ``size`` [H, W], ``dtype`` (fp32|bf16|fp16),
  ``device``, ``warmup``, ``repeats``, ``threads`` (None: torch's default), ``num_classes``,
  ``matmul_size`` (None: 2048 on CPU, 8192 on CUDA);
* ``copy`` (optional): ``{"method", "src", "dst"}``: load candidate ``src``'s weights into ``dst``
  (its BatchNorms randomised first) and report the largest output difference between the two.

OUT receives per candidate the times and their summary, pairwise per-round ratios, the measured
matmul GFLOP/s (before and after the timing), peak RSS and RSS before the first forward, peak CUDA
memory, and the load average.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

from segzoo.bench.candidates import Candidate
from segzoo.bench.flops import count_params
from segzoo.bench.machine import load_average, matmul_gflops
from segzoo.bench.peers import copy_weights, randomise_bn
from segzoo.bench.timing import (
    DTYPES,
    inference_step,
    model_inputs,
    model_task,
    paired_ratios,
    run_interleaved,
    summarize,
    training_step,
)
from segzoo.export.deploy import optimize_for_inference


def rss_mb() -> float | None:
    """Current resident memory of this process in MiB (Linux ``/proc``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def build_on(c: Candidate, num_classes: int, device: torch.device) -> torch.nn.Module:
    """``c`` built and moved to ``device``; on a GPU its parameters are created there directly
    (CPU initialisation of a large model such as VGG-16's FCN takes seconds per job)."""
    torch.manual_seed(0)
    if device.type == "cuda":
        with torch.device(device):
            return c.build(num_classes).to(device)
    return c.build(num_classes).to(device)


def build_models(cands: list[Candidate], job: dict, device: torch.device) -> tuple[list, dict]:
    """Build every candidate (deploy variants from their eager twin after any weight copy)."""
    num_classes = job["num_classes"]
    models: list = [None] * len(cands)
    for i, c in enumerate(cands):
        if c.variant == "eager":
            models[i] = build_on(c, num_classes, device)
    info: dict = {}
    copy = job.get("copy")
    if copy:
        src, dst = models[copy["src"]], models[copy["dst"]]
        randomise_bn(src)
        copy_weights(copy["method"], src, dst)
        info["copied"] = f"{cands[copy['src']].label} -> {cands[copy['dst']].label} ({copy['method']})"
    h, w = job["size"]
    for i, c in enumerate(cands):
        if c.variant not in ("deploy", "onnxruntime"):
            continue
        twin = next((j for j, d in enumerate(cands)
                     if d.variant == "eager" and (d.source, d.name, d.kwargs) == (c.source, c.name, c.kwargs)), None)
        base = models[twin] if twin is not None else build_on(c.with_variant("eager"), num_classes, device)
        if c.variant == "onnxruntime":
            if device.type != "cpu":
                raise ValueError("the onnxruntime row runs on the CPU only (--device cpu)")
            from segzoo.bench.onnx_runtime import OrtRunner

            models[i] = OrtRunner(base, (h, w), threads=job.get("threads"))
            continue
        side = max(32, min(h, w, 64))
        example = model_inputs(base, torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device))
        dtype = job.get("deploy_dtype") or job.get("dtype")
        deployed = optimize_for_inference(base, dtype=None if dtype == "fp32" else dtype, example=example,
                                          compile=job.get("deploy_compile") or False)
        info.setdefault("fused_pairs", {})[c.label] = len(deployed.fusion.fused)
        models[i] = deployed
    return models, info


def compare_outputs(eager: torch.nn.Module, variant: torch.nn.Module, images: torch.Tensor) -> dict:
    """A detector's variant against its eager twin on the timed images: detections of each
    image matched one to one (:func:`segzoo.export.detection.compare_detections`, score >= 0.5,
    the worst image's figures). Detections of random weights tie in score, so a reordering near a
    tie can leave a few unmatched."""
    from segzoo.export.detection import compare_detections, detections_to_numpy

    with torch.inference_mode():
        ref, got = eager(list(images)), variant(list(images))
    max_det = getattr(getattr(eager, "roi_heads", None), "detections_per_img", None)
    worst: dict = {}
    for r, g in zip(ref, got):
        cmp = compare_detections(detections_to_numpy(r), detections_to_numpy(g), score_threshold=0.5,
                                 max_detections=max_det)
        for k, v in cmp.items():
            smallest_is_worst = k.startswith("mask_iou") or k == "detections"
            worst[k] = min(worst.get(k, v), v) if smallest_is_worst else max(worst.get(k, v), v)
    return worst


def run_job(job: dict) -> dict:
    """Run one job (see the module docstring) in this process and return its result."""
    threads = torch.get_num_threads()
    try:
        return _run_job(job)
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests, --in-process) keep their setting
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()  # the next in-process job starts from the same free memory


def _run_job(job: dict) -> dict:
    t_start = time.perf_counter()
    torch.set_flush_denormal(True)
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    device = torch.device(job.get("device", "cpu"))
    dtype = DTYPES[job.get("dtype", "fp32")]
    cands = [Candidate.from_dict(c) for c in job["candidates"]]
    load_start = load_average()
    mm_n = job.get("matmul_size")
    mm_before = [matmul_gflops(device, dtype or torch.float32, n=mm_n, repeats=3)]
    models, info = build_models(cands, job, device)
    batch, (h, w) = job["batch"], job["size"]
    images = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(1)).to(device)
    if job["mode"] == "train":
        steps = [training_step(m, images, dtype, job["num_classes"]) for m in models]
    else:
        steps = [inference_step(m, images, dtype) for m in models]
    last: list = [None] * len(steps)

    def keep(i, step):
        def run():
            last[i] = step()
        return run

    rss_before = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = run_interleaved([keep(i, s) for i, s in enumerate(steps)], warmup=job["warmup"],
                            repeats=job["repeats"], device=device)
    cuda_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    mm_after = [matmul_gflops(device, dtype or torch.float32, n=mm_n, repeats=3)]
    result = {
        "mode": job["mode"], "batch": batch, "size": [h, w], "dtype": job.get("dtype", "fp32"),
        "device": str(device), "threads": torch.get_num_threads(),
        "candidates": [],
        "ratios": [],
        "matmul_gflops": sorted(mm_before + mm_after)[len(mm_before + mm_after) // 2],
        "matmul_gflops_before_after": mm_before + mm_after,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "cuda_peak_mb": cuda_peak,
        "load_average": {"start": load_start, "end": load_average()},
        **info,
    }
    for c, m, t in zip(cands, models, times):
        result["candidates"].append({"label": c.label, "candidate": c.to_dict(),
                                     "params": count_params(getattr(m, "model", m)),
                                     "times_s": t, "seconds": summarize(t)})
    for i in range(len(cands)):
        for j in range(i + 1, len(cands)):
            result["ratios"].append({"a": i, "b": j, "a_over_b": paired_ratios(times[i], times[j])})
    copy = job.get("copy")
    if copy and job["mode"] == "infer":
        a, b = last[copy["src"]].float(), last[copy["dst"]].float()
        result["output_max_abs_diff"] = (a - b).abs().max().item()
        result["output_max_abs"] = a.abs().max().item()
    for i, c in enumerate(cands):  # deploy / onnxruntime vs its eager twin on the timed input
        if c.variant in ("deploy", "onnxruntime") and job["mode"] == "infer":
            for j, d in enumerate(cands):
                if d.variant == "eager" and (d.source, d.name, d.kwargs) == (c.source, c.name, c.kwargs):
                    if model_task(models[j]) == "instance":
                        result.setdefault(f"{c.variant}_detections", {})[c.label] = compare_outputs(
                            models[j], models[i], images)
                    else:
                        result.setdefault(f"{c.variant}_max_abs_diff", {})[c.label] = (
                            last[i].float() - last[j].float()).abs().max().item()
    result["wall_s"] = time.perf_counter() - t_start
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m segzoo.bench.worker JOB.json OUT.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    result = run_job(job)
    Path(argv[1]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
