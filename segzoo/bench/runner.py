"""``segzoo bench``: run every measurement of a benchmark in fresh worker processes and collect
the results (JSON + Markdown, see :mod:`segzoo.bench.report`).

Per model: parameters and GFLOPs (meta device, FLOPs = 2 x MACs), inference latency at batch 1
and the larger batches (one fresh process each: its peak RSS is the model's), one training step,
and with ``deploy`` the deploy mode against eager in one process (interleaved), with
``onnxruntime`` the ONNX export run by onnxruntime against eager likewise. Per ready peer
pair: ours against the peer (and ours in deploy mode) interleaved in one process, as ratios.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import segzoo
from segzoo.bench.candidates import Candidate
from segzoo.bench.flops import count_flops, count_params
from segzoo.bench.machine import machine_info
from segzoo.bench.peers import PeerPair, find_pairs
from segzoo.compiling import compile_kwargs
from segzoo.errors import SegzooError
from segzoo.registry import MODELS

INSTANCE_SIZE = (800, 1333)  # Mask R-CNN's benchmark input (shorter side 800)


@dataclass
class BenchSettings:
    """What ``segzoo bench`` measures (its command-line options)."""

    models: list[str] = field(default_factory=lambda: ["all"])
    backbones: list[str] | None = None
    model_kwargs: dict = field(default_factory=dict)
    size: tuple[int, int] = (512, 512)
    instance_size: tuple[int, int] = INSTANCE_SIZE
    batches: list[int] = field(default_factory=lambda: [1, 8])
    device: str = "cpu"
    dtype: str = "fp32"
    warmup: int = 1
    repeats: int = 5
    large_batch_repeats: int | None = None   # default: repeats
    train: bool = True
    train_batch: int = 2
    train_repeats: int | None = None         # default: repeats
    deploy: bool = False
    deploy_dtype: str | None = None          # autocast of the deploy variant (default: dtype)
    deploy_compile: str | None = None        # torch.compile mode of the deploy variant
    onnxruntime: bool = False                # time the ONNX export in onnxruntime against eager
    peers: list[str] = field(default_factory=lambda: ["all"])
    peer_batch: int = 1
    threads: int | None = None
    num_classes: int = 21
    timeout: float = 3600.0
    matmul_size: int | None = None           # default: 2048 (CPU) / 8192 (CUDA)
    in_process: bool = False                 # run jobs in this process (tests; no fresh RSS)
    command: str = ""


def model_specs(settings: BenchSettings) -> list[Candidate]:
    """The segzoo candidates: every registered (non test-only) model for ``all`` (none for
    ``none``: a peers-only run), each with its default backbone or with each of
    ``settings.backbones``; ``model_kwargs`` go to the builders that take them."""
    names = settings.models
    if names in ([], ["none"]):  # peers only
        return []
    if names == ["all"]:  # models with a default architecture (not the composed encoder_decoder)
        names = [n for n in MODELS.names() if not MODELS.entry(n).meta.get("test_only")
                 and not _required(n, settings.model_kwargs)]
    for n in names:
        MODELS.entry(n)  # unknown name: RegistryError with close matches
    out = []
    for name in names:
        params = MODELS.config_params(name)
        kwargs = {k: v for k, v in settings.model_kwargs.items() if params is None or k in params}
        for backbone in settings.backbones or [None]:
            kw = dict(kwargs)
            if backbone is not None:
                kw["backbone"] = backbone
            elif params is not None and "backbone" in params:
                kw.setdefault("backbone", params["backbone"].default)
            out.append(Candidate("segzoo", name, kw))
    return out


def _required(name: str, given: dict) -> list[str]:
    """Builder keywords of ``name`` with no default that ``given`` does not supply."""
    import inspect

    params = MODELS.config_params(name) or {}
    return [k for k, p in params.items() if p.default is inspect.Parameter.empty
            and p.kind is inspect.Parameter.KEYWORD_ONLY and k not in given and k != "num_classes"]


def is_instance(c: Candidate) -> bool:
    return c.source == "segzoo" and c.name in MODELS and MODELS.entry(c.name).meta.get("task") == "instance"


def size_for(c: Candidate, settings: BenchSettings) -> tuple[int, int]:
    return tuple(settings.instance_size) if is_instance(c) else tuple(settings.size)


def for_timing(c: Candidate, size: Sequence[int]) -> Candidate:
    """An instance model (segzoo's or torchvision's detection API) as timed at ``size``: it
    resizes its input itself (shorter side to ``min_size``, longer at most ``max_size``, 800/1333
    by default), so it gets ``min_size=min(size), max_size=max(size)``; and randomly initialised
    weights score every class near 1/K, below the default 0.05 threshold, which would leave the
    mask head with nothing to do, so ``box_score_thresh=0``: the mask head runs on the top
    ``detections_per_img`` (100) boxes, the paper's inference. Semantic models pass unchanged."""
    if not (is_instance(c) or (c.source == "torchvision" and "rcnn" in c.name)):
        return c
    kwargs = {"box_score_thresh": 0.0, **c.kwargs, "min_size": min(size), "max_size": max(size)}
    return Candidate(c.source, c.name, kwargs, dict(c.patch), c.variant)


def static_counts(c: Candidate, size: Sequence[int], num_classes: int) -> dict:
    """Parameters and GFLOPs per image (meta device; a real CPU model if meta fails)."""
    try:
        model = c.build_meta(num_classes)
    except Exception as exc:  # the candidate cannot be built: reported, not fatal
        return {"error": f"build failed: {type(exc).__name__}: {exc}"}
    out = {"params": count_params(model)}
    try:
        out["gflops"] = count_flops(model, size) / 1e9
    except Exception:
        try:
            out["gflops"] = count_flops(c.build(num_classes), size) / 1e9
        except Exception as exc:
            out["gflops"] = None
            out["flops_error"] = f"{type(exc).__name__}: {exc}"
    return out


class Runner:
    """Runs worker jobs in fresh processes (``python -m segzoo.bench.worker``)."""

    def __init__(self, settings: BenchSettings, log: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.log = log

    def job(self, candidates: list[Candidate], mode: str, batch: int, size: Sequence[int], *,
            repeats: int | None = None, copy: dict | None = None) -> dict:
        s = self.settings
        job = {"candidates": [c.to_dict() for c in candidates], "mode": mode, "batch": batch,
               "size": list(size), "dtype": s.dtype, "device": s.device, "warmup": s.warmup,
               "repeats": repeats or s.repeats, "threads": s.threads, "num_classes": s.num_classes,
               "copy": copy, "matmul_size": s.matmul_size, "deploy_dtype": s.deploy_dtype,
               "deploy_compile": s.deploy_compile}
        what = f"{mode} b{batch} {size[0]}x{size[1]}: " + " vs ".join(c.label for c in candidates)
        self.log(f"  {what} ...")
        t0 = time.perf_counter()
        if s.in_process:
            from segzoo.bench.worker import run_job

            try:
                result = run_job(job)
            except Exception as exc:  # as a failed worker: reported in the results, not fatal
                self.log(f"    failed: {type(exc).__name__}: {exc}")
                return {"error": f"{type(exc).__name__}: {exc}"}
            result["in_process"] = True
            self._done(result, t0)
            return result
        with tempfile.TemporaryDirectory(prefix="segzoo-bench-job-") as folder:  # gone with the job
            return self._in_worker(job, Path(folder), t0)

    def _in_worker(self, job: dict, folder: Path, t0: float) -> dict:
        """``job`` run by a fresh worker process through JSON files in ``folder``."""
        s = self.settings
        jpath, opath = folder / "job.json", folder / "out.json"
        jpath.write_text(json.dumps(job))
        env = dict(os.environ)
        root = str(Path(segzoo.__file__).resolve().parents[1])  # the segzoo this process uses
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        try:
            proc = subprocess.run([sys.executable, "-m", "segzoo.bench.worker", str(jpath), str(opath)],
                                  capture_output=True, text=True, timeout=s.timeout, env=env)
        except subprocess.TimeoutExpired:
            self.log(f"    timed out after {s.timeout:g} s")
            return {"error": f"timed out after {s.timeout:g} s"}
        if proc.returncode != 0 or not opath.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            self.log(f"    failed: {tail[-1] if tail else proc.returncode}")
            return {"error": f"worker exit {proc.returncode}: {' | '.join(tail)}"}
        result = json.loads(opath.read_text())
        self._done(result, t0)
        return result

    def _done(self, result: dict, t0: float) -> None:
        med = ", ".join(f"{c['seconds']['median'] * 1e3:.0f} ms" for c in result["candidates"])
        self.log(f"    {med} ({time.perf_counter() - t0:.0f} s)")


def bench_model(runner: Runner, c: Candidate) -> dict:
    """Every measurement of one segzoo model (a row of the models table)."""
    s = runner.settings
    size = size_for(c, s)
    c = for_timing(c, size)
    row = {"label": c.label, "candidate": c.to_dict(), "size": list(size),
           **static_counts(c, size, s.num_classes)}
    if "error" in row:
        runner.log(f"{c.label}: skipped ({row['error']})")
        return row
    runner.log(f"{c.label}: {row['params'] / 1e6:.1f}M params, "
               f"{row['gflops'] if row['gflops'] is None else round(row['gflops'], 1)} GFLOPs")
    row["infer"] = {}
    for b in s.batches:
        reps = s.repeats if b == 1 else (s.large_batch_repeats or s.repeats)
        row["infer"][str(b)] = runner.job([c], "infer", b, size, repeats=reps)
    if s.train:
        row["train"] = runner.job([c], "train", s.train_batch, size, repeats=s.train_repeats or s.repeats)
    if s.deploy:
        row["deploy"] = runner.job([c, c.with_variant("deploy")], "infer", 1, size)
    if s.onnxruntime:
        if is_instance(c):
            row["onnxruntime"] = {"skipped": "instance models are not exported to ONNX"}
        else:
            row["onnxruntime"] = runner.job([c, c.with_variant("onnxruntime")], "infer", 1, size)
    return row


def bench_pair(runner: Runner, pair: PeerPair) -> dict:
    """Ours against the peer (and ours in deploy mode), interleaved in one process."""
    s = runner.settings
    status = pair.status()
    rec = {"key": pair.key, "relation": pair.relation, "note": pair.note, "status": status,
           "ours": pair.ours.to_dict() if pair.ours else None, "peer": pair.peer.to_dict()}
    if status != "ready":
        runner.log(f"peer {pair.key}: not timed ({status})")
        return rec
    size = pair.size or size_for(pair.ours, s)
    pair = replace(pair, ours=for_timing(pair.ours, size), peer=for_timing(pair.peer, size))
    rec.update(ours=pair.ours.to_dict(), peer=pair.peer.to_dict(), size=list(size))
    rec["ours_counts"] = static_counts(pair.ours, size, s.num_classes)
    rec["peer_counts"] = static_counts(pair.peer, size, s.num_classes)
    runner.log(f"peer {pair.key} ({pair.relation})")
    cands = [pair.ours, pair.peer] + ([pair.ours.with_variant("deploy")] if s.deploy else [])
    copy = {"method": pair.copy, "src": 1, "dst": 0} if pair.copy else None
    rec["run"] = runner.job(cands, "infer", s.peer_batch, size, copy=copy)
    return rec


def run_benchmark(settings: BenchSettings, out_dir: str | Path | None = None,
                  log: Callable[[str], None] = print) -> dict:
    """Run the benchmark; write ``bench.json`` and ``bench.md`` into ``out_dir`` (after every
    model, so an interrupted run leaves its finished rows). Returns the results dict."""
    from segzoo.bench.report import markdown

    for opt, value in (("--dtype", settings.dtype), ("--deploy-dtype", settings.deploy_dtype or "fp32")):
        if value not in ("fp32", "bf16", "fp16"):
            raise SegzooError(f"{opt} must be fp32, bf16 or fp16, got {value!r}")
    try:
        compile_kwargs(settings.deploy_compile)
    except ValueError as e:
        raise SegzooError(f"--deploy-compile: {e}") from None
    if settings.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SegzooError("--device cuda: no CUDA device is available here")
    runner = Runner(settings, log)
    specs = model_specs(settings)
    pairs = find_pairs(settings.peers) if settings.peers else []
    results = {"schema": 1, "machine": machine_info(settings.device), "settings": asdict(settings),
               "models": [], "peers": []}
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        if out is not None:
            results["machine"]["load_average_end"] = machine_info(settings.device)["load_average"]
            (out / "bench.json").write_text(json.dumps(results, indent=1))
            (out / "bench.md").write_text(markdown(results))

    t0 = time.perf_counter()
    for c in specs:
        results["models"].append(bench_model(runner, c))
        save()
    for pair in pairs:
        results["peers"].append(bench_pair(runner, pair))
        save()
    results["wall_s"] = time.perf_counter() - t0
    save()
    return results
