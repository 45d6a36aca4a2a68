"""Training throughput and peak GPU memory of the zoo next to torchvision, fp32 vs bf16.

    python benchmarks/gpu_train.py --out benchmarks/results/gpu-h100      # on a GPU (~1-2 min)
    python benchmarks/gpu_train.py --device cpu --quick --out /tmp/x       # dry run, seconds

Two groups, each timed in this one process with the models' steps interleaved (round r runs them
in an order rotated by r, :func:`segzoo.bench.timing.run_interleaved`):

Precisions (``--dtypes``): fp32, bf16 autocast with channels_last (``bf16-cl``: the engine's
``train.amp: bf16`` + ``train.channels_last: true``, NHWC for the tensor cores) and plain bf16
by default; ``fp16`` (with a GradScaler, as ``train.amp: fp16``) and ``-cl`` of any of them too.

* semantic, 512x1024 crops (Cityscapes-sized), batch 8: segzoo DeepLab v3+ ResNet-50 (output
  stride 16, the paper's training setting), segzoo DeepLab v3 ResNet-50 in torchvision's layout
  (OS 8, the same network as torchvision's) and torchvision's ``deeplabv3_resnet50``;
* instance, 800x1333, batch 4: segzoo Mask R-CNN R50-FPN and torchvision's
  ``maskrcnn_resnet50_fpn``, on fixed synthetic targets (3 boxes and masks per image).

In each pair of equal architectures segzoo's model starts from torchvision's initial weights
(``from_torchvision``), so both train the same network on the same data and only the code differs
(their losses then differ only by dropout's and the RoI samplers' random draws).

One training step = forward (autocast for bf16), loss, backward, SGD step (momentum 0.9)
(:func:`segzoo.bench.timing.training_step`: cross-entropy on fixed random labels, or the sum of
Mask R-CNN's losses). cuDNN autotuning follows the engine's ``train.cudnn_benchmark: auto`` (on
for the semantic group's fixed shapes, off for Mask R-CNN, whose mask head sees a new number of
positive RoIs at most steps; ``--cudnn-benchmark on|off`` sets it for both groups). TF32
settings are torch's defaults (recorded). img/s = batch / median step time after warm-up.
Peak memory = ``torch.cuda.max_memory_allocated`` over 2 steps (after 1 warm-up step, whose cuDNN
autotuning tries large workspaces) of the model alone on the GPU
(weights, gradients, optimizer state and activations). Losses of every step are kept so that fp32
and bf16 runs from the same initial weights on the same data can be compared.

``--models`` keeps some of the candidates (by name: ``deeplabv3plus``, ``maskrcnn_resnet50_fpn``,
...). ``--compile MODE`` adds a ``torch.compile``d twin of each (``default``, ``reduce-overhead``,
``max-autotune`` or ``backend:<name>``, as ``segzoo bench --deploy-compile``; the engine's
``train.compile``), timed interleaved with its eager twin; compilation happens in the warm-up
steps, and a compiled model's peak memory is not measured (that would compile it again).
``--compile-dtypes`` keeps the compiled twins to some of the precisions (the others run eager
only). ``--compile-levers SPEC ...`` (with ``--compile``) adds one more compiled twin per SPEC,
a ``+``-joined set of switches its steps run under (:data:`LEVERS`): ``aten-resize`` keeps ATen's
bilinear resize kernels instead of Inductor's decomposition, whose backward is a scatter-add
(21% of compiled DeepLab v3+'s GPU time in run 5); ``depthwise-taps`` computes the depthwise
convolutions as fused multiply-adds instead of cuDNN's grouped kernel (10%).
``--profile`` adds torch.profiler's top operators of 2 steps of each model after the timed steps,
and for each lever twin whether its levers changed what ran (:func:`lever_evidence`).

Writes ``gpu_train.json`` and ``gpu_train.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compile_levers import LEVERS, lever_evidence, profiled, verdict, with_levers  # noqa: E402

from segzoo.bench.candidates import Candidate  # noqa: E402
from segzoo.bench.machine import machine_info, synchronize  # noqa: E402
from segzoo.bench.peers import copy_weights  # noqa: E402
from segzoo.bench.timing import DTYPES, run_interleaved, training_step  # noqa: E402
from segzoo.bench.worker import build_on  # noqa: E402
from segzoo.compiling import compile_kwargs, compile_module  # noqa: E402
from segzoo.engine.reproducibility import cudnn_benchmark  # noqa: E402

TV_DLV3 = {"backbone": "resnet50", "output_stride": 8, "bottleneck": True, "aspp_dropout": 0.5}


def groups(quick: bool) -> list[dict]:
    """The benchmark groups (``quick``: tiny sizes and a ResNet-18 DeepLab v3+, for a dry run).
    ``copy``: segzoo's model of torchvision's architecture starts from torchvision's weights
    (:func:`segzoo.bench.peers.copy_weights`), so the pair trains the same network the same way."""
    r50 = "resnet18" if quick else "resnet50"
    return [
        {"name": "semantic", "size": (32, 64) if quick else (512, 1024), "batch": 2 if quick else 8,
         "num_classes": 19, "candidates": [
             Candidate("segzoo", "deeplabv3plus", {"backbone": r50, "output_stride": 16}),
             Candidate("segzoo", "deeplabv3", TV_DLV3),
             Candidate("torchvision", "deeplabv3_resnet50", {"aux_loss": False})],
         "copy": {"method": "from_torchvision:deeplabv3", "src": "deeplabv3_resnet50", "dst": "deeplabv3"}},
        {"name": "instance", "size": (64, 64) if quick else (800, 1333), "batch": 1 if quick else 4,
         "num_classes": 81, "candidates": [
             Candidate("segzoo", "maskrcnn", {"backbone": "resnet50"}),
             Candidate("torchvision", "maskrcnn_resnet50_fpn", {})],
         "copy": {"method": "from_torchvision:maskrcnn", "src": "maskrcnn_resnet50_fpn", "dst": "maskrcnn"}},
    ]


def copy_pair(group: dict, entries: list, models: list) -> str | None:
    """Load the group's torchvision weights into segzoo's twin of it (every entry of that name,
    before compilation); a note of what was copied, or None when the pair is not in the run."""
    spec = group.get("copy")
    src = [m for (c, mode), m in zip(entries, models) if spec and c.name == spec["src"] and not mode]
    dst = [(c, m) for (c, _), m in zip(entries, models) if spec and c.name == spec["dst"]]
    if not src or not dst:
        return None
    for _, m in dst:
        copy_weights(spec["method"], src[0], m)
    return f"{spec['src']} -> {dst[0][0].label} ({spec['method']})"


def sized(c: Candidate, size: tuple[int, int]) -> Candidate:
    """Detection models resize their input themselves: keep it at ``size``."""
    if "rcnn" not in c.name:
        return c
    return Candidate(c.source, c.name, {**c.kwargs, "min_size": min(size), "max_size": max(size)})


def images_for(group: dict, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    h, w = group["size"]
    x = torch.rand(group["batch"], 3, h, w, generator=torch.Generator().manual_seed(1)).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def precision(name: str) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, channels_last) of a ``--dtypes`` entry: ``fp32``, ``bf16``, ``fp16``, each
    optionally with ``-cl`` (weights and input in channels_last, as ``train.channels_last``)."""
    base, cl = (name[:-3], True) if name.endswith("-cl") else (name, False)
    return DTYPES[base], cl


def build(c: Candidate, group: dict, device: torch.device, channels_last: bool) -> torch.nn.Module:
    model = build_on(c, group["num_classes"], device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def build_initial(c: Candidate, group: dict, device: torch.device, channels_last: bool) -> torch.nn.Module:
    """``c`` built alone with the initial weights the timed run gives it: a copy pair's segzoo
    model gets its torchvision twin's (built, copied from, then dropped; :func:`copy_pair`)."""
    model = build(c, group, device, channels_last)
    spec = group.get("copy")
    src = [s for s in group["candidates"] if spec and s.name == spec["src"]]
    if src and c.name == spec["dst"]:
        source = build(sized(src[0], group["size"]), group, device, channels_last)
        copy_pair(group, [(src[0], None), (c, None)], [source, model])
    return model


def peak_memory(c: Candidate, group: dict, name: str, device: torch.device) -> float | None:
    """Peak CUDA MiB of 2 training steps of ``c`` alone on the GPU (None on the CPU), from the
    initial weights the timed run gives it (:func:`copy_pair`)."""
    if device.type != "cuda":
        return None
    dtype, cl = precision(name)
    model = build_initial(c, group, device, cl)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    step = training_step(model, images_for(group, device, cl), dtype, group["num_classes"])
    step()  # warm-up: cuDNN's autotuning tries algorithms with large workspaces on the first step
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):
        step()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    del model, step
    torch.cuda.empty_cache()
    return peak


def run_group(group: dict, dtype_name: str, device: torch.device, warmup: int, steps: int, *,
              compile: str | None = None, levers: list[tuple[str, ...]] = (), profile: bool = False) -> dict:
    """Train every candidate of ``group`` (and, with ``compile``, a compiled twin of each, and
    one more per entry of ``levers``, a tuple of :data:`LEVERS` names) in ``dtype_name`` for
    ``warmup`` + ``steps`` interleaved steps; per model: step times, img/s, peak memory, losses
    (and with ``profile``, the profiler's table of 2 more steps)."""
    dtype, cl = precision(dtype_name)
    if compile:
        torch._dynamo.reset()  # the previous runs' graphs: no recompile limit reached across runs
    cands = [sized(c, group["size"]) for c in group["candidates"]]
    entries = [(c, None) for c in cands] + ([(c, compile) for c in cands] if compile else [])
    switched = [()] * len(entries)
    for spec in levers if compile else ():
        entries += [(c, compile) for c in cands]
        switched += [tuple(spec)] * len(cands)
    peaks = [None if mode else peak_memory(c, group, dtype_name, device) for c, mode in entries]
    models = [build(c, group, device, cl) for c, _ in entries]  # seed 0 each: same init per dtype
    copied = copy_pair(group, entries, models)
    models = [compile_module(m, mode) if mode else m for m, (_, mode) in zip(models, entries)]
    images = images_for(group, device, cl)
    losses: list[list] = [[] for _ in entries]

    def keep(i, step):
        def run():
            losses[i].append(step())
        return run

    steps_fns = [training_step(m, images, dtype, group["num_classes"]) for m in models]
    steps_fns = [with_levers(f, sw) for f, sw in zip(steps_fns, switched)]
    fns = [keep(i, f) for i, f in enumerate(steps_fns)]
    t0 = time.perf_counter()
    times = run_interleaved(fns, warmup=warmup, repeats=steps, device=device)
    wall = time.perf_counter() - t0
    rows = []
    for (c, mode), sw, t, peak, loss, step in zip(entries, switched, times, peaks, losses, steps_fns):
        med = statistics.median(t)
        label = c.label + (f" [compiled {mode}{', ' + '+'.join(sw) if sw else ''}]" if mode else "")
        rows.append({"label": label, "candidate": c.to_dict(), "compile": mode, "levers": list(sw), "step_s": t,
                     "median_step_s": med, "img_per_s": group["batch"] / med, "peak_mem_mib": peak,
                     "losses": [x.item() for x in loss], **(profiled(step, device) if profile else {})})
    if profile:
        for x in rows:
            x["levers_engaged"] = lever_evidence(x, rows)
    del models, fns, steps_fns
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"group": group["name"], "dtype": dtype_name, "size": list(group["size"]),
            "batch": group["batch"], "num_classes": group["num_classes"], "warmup": warmup,
            "steps": steps, "wall_s": wall, "copied": copied, "models": rows}


def autotuning(runs: list[dict]) -> str:
    """'on', 'off' or 'on for semantic, off for instance' (runs before the option: on)."""
    by_group = {r["group"]: "on" if r.get("cudnn_benchmark", True) else "off" for r in runs}
    if len(set(by_group.values())) <= 1:
        return next(iter(by_group.values()), "on")
    return ", ".join(f"{v} for {g}" for g, v in by_group.items())


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = ["# Training throughput and peak memory", "",
             "* Machine: " + (f"{m['gpu']} ({m.get('gpu_memory_gib')} GiB, driver {m.get('gpu_driver')}, "
                               f"CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}, TF32 {m.get('tf32')})"
                               if m.get("gpu") else f"{m['cpu']}, {m['cpu_count']} cores (no GPU)")
             + f"; torch {m['torch']}, torchvision {m['torchvision']}; {m['date']}; segzoo {m.get('segzoo_commit')}.",
             f"* Command: `{results['command']}`",
             f"* {results['warmup']} warm-up + {results['steps']} timed steps per model, interleaved; "
             f"cuDNN autotuning {autotuning(results['runs'])}; SGD momentum 0.9; img/s = batch / median step time.",
             *sorted({f"* Same initial weights: {r['copied']}." for r in results["runs"] if r.get("copied")}), "",
             "| group | input | batch | model | dtype | step ms (median) | step ms (min-max) | img/s | peak MiB "
             "| img/s vs fp32 | first -> last loss |",
             "|---|---|---:|---|---|---:|---:|---:|---:|---:|---|"]
    fp32 = {(r["group"], x["label"]): x["img_per_s"] for r in results["runs"] if r["dtype"] == "fp32"
            for x in r["models"]}
    for r in results["runs"]:
        for x in r["models"]:
            speedup = x["img_per_s"] / fp32[(r["group"], x["label"])] if (
                r["dtype"] != "fp32" and (r["group"], x["label"]) in fp32) else None
            peak = "n/a" if x["peak_mem_mib"] is None else f"{x['peak_mem_mib']:.0f}"
            lines.append(f"| {r['group']} | {r['size'][0]}x{r['size'][1]} | {r['batch']} | `{x['label']}` | "
                         f"{r['dtype']} | {x['median_step_s'] * 1e3:.0f} | "
                         f"{min(x['step_s']) * 1e3:.0f}-{max(x['step_s']) * 1e3:.0f} | {x['img_per_s']:.1f} | {peak} | "
                         f"{'-' if speedup is None else f'{speedup:.2f}x'} | "
                         f"{x['losses'][0]:.3f} -> {x['losses'][-1]:.3f} |")
    eager = {(r["group"], r["dtype"], x["candidate"]["name"]): x["img_per_s"] for r in results["runs"]
             for x in r["models"] if not x.get("compile")}
    compiled = [(r, x) for r in results["runs"] for x in r["models"] if x.get("compile")]
    if compiled:
        lines += ["", "Compiled against eager (same run, interleaved), and against the same model's fp32 eager run:", ""]
        for r, x in compiled:
            twin = eager.get((r["group"], r["dtype"], x["candidate"]["name"]))
            base = eager.get((r["group"], "fp32", x["candidate"]["name"]))
            lines.append(f"* `{x['label']}` {r['dtype']}: {x['img_per_s']:.1f} img/s"
                         + (f", {x['img_per_s'] / twin:.2f}x its eager twin" if twin else "")
                         + (f", {x['img_per_s'] / base:.2f}x fp32 eager" if base else ""))
    levered = [(r, x) for r, x in compiled if x.get("levers_engaged")]
    if levered:
        lines += ["", "Did the levers change what ran (operator calls in the 2 profiled steps)?", ""]
        for r, x in levered:
            lines.append(f"* `{x['label']}` {r['dtype']}: "
                         + "; ".join(verdict(lever, e) for lever, e in x["levers_engaged"].items()))
    for e in results.get("errors", []):
        lines.append(f"\n* {e['group']} {e['dtype']} failed: {e['error']}")
    with_profile = [(r, x) for r in results["runs"] for x in r["models"] if x.get("profile")]
    if with_profile:
        lines += ["", "## Profiles: 2 training steps after the timed ones, top operators by self device time "
                  "(self CPU time on a CPU)"]
        for r, x in with_profile:
            lines += ["", f"### `{x['label']}` {r['dtype']}, {r['size'][0]}x{r['size'][1]}, batch {r['batch']}", "",
                      "```", x["profile"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16-cl", "bf16"],
                   choices=[*DTYPES, *(f"{d}-cl" for d in DTYPES)],
                   help="precisions in this order; -cl: channels_last weights and input")
    p.add_argument("--groups", nargs="+", default=["semantic", "instance"])
    p.add_argument("--models", nargs="+", default=None,
                   help="keep only these candidates, by name (deeplabv3plus, deeplabv3, deeplabv3_resnet50, "
                        "maskrcnn, maskrcnn_resnet50_fpn); default all")
    p.add_argument("--compile", default=None, metavar="MODE",
                   help="also time a torch.compile'd twin of each model: default, reduce-overhead, "
                        "max-autotune or backend:<name> (backend:eager: a dry run without Inductor)")
    p.add_argument("--compile-dtypes", nargs="+", default=None, metavar="DTYPE",
                   help="with --compile: compiled twins only in these of --dtypes (default: all)")
    p.add_argument("--compile-levers", nargs="+", default=[], metavar="SPEC",
                   help="with --compile: one more compiled twin per SPEC, a '+'-joined set of "
                        f"{', '.join(LEVERS)} (e.g. aten-resize aten-resize+depthwise-taps)")
    p.add_argument("--cudnn-benchmark", choices=("auto", "on", "off"), default="auto",
                   help="cuDNN autotuning: auto (the engine's default: semantic on, instance off), on or off")
    p.add_argument("--profile", action="store_true",
                   help="add torch.profiler's top operators of 2 more steps of each model")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="tiny sizes, ResNet-18 (a dry run on the CPU)")
    p.add_argument("--out", default="benchmarks/results/gpu-train")
    args = p.parse_args(argv)
    known = {c.name for g in groups(args.quick) for c in g["candidates"]}
    unknown = sorted(set(args.models or ()) - known)
    if unknown:
        p.error(f"unknown --models {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    levers = [tuple(spec.split("+")) for spec in args.compile_levers]
    bad = sorted({name for spec in levers for name in spec} - set(LEVERS))
    if bad:
        p.error(f"unknown --compile-levers {', '.join(bad)}; choose from {', '.join(LEVERS)}")
    try:
        compile_kwargs(args.compile)
    except ValueError as e:
        p.error(f"--compile: {e}")
    if levers and not args.compile:
        p.error("--compile-levers needs --compile MODE (each SPEC adds a compiled twin)")
    if args.compile_dtypes is not None and (not args.compile or set(args.compile_dtypes) - set(args.dtypes)):
        p.error("--compile-dtypes needs --compile MODE and names some of --dtypes "
                f"({' '.join(args.dtypes)}), got {' '.join(args.compile_dtypes)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_train: no CUDA device", file=sys.stderr)
        return 2
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # as the engine: denormal floats slow CPU steps 3-8x
    if args.quick:
        args.warmup, args.steps = 0, 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine_info(args.device), "command": "python " + " ".join(sys.argv),
               "warmup": args.warmup, "steps": args.steps, "runs": [], "errors": []}
    setting = {"auto": "auto", "on": True, "off": False}[args.cudnn_benchmark]  # train.cudnn_benchmark's values
    for group in groups(args.quick):
        if args.models is not None:
            group["candidates"] = [c for c in group["candidates"] if c.name in args.models]
        if group["name"] not in args.groups or not group["candidates"]:
            continue
        autotune = cudnn_benchmark(setting, deterministic=False, task=group["name"])
        torch.backends.cudnn.benchmark = autotune
        for dtype in args.dtypes:
            print(f"{group['name']} {dtype} {group['size']} b{group['batch']} cuDNN autotuning "
                  f"{'on' if autotune else 'off'} ...", flush=True)
            try:
                mode = args.compile if args.compile_dtypes is None or dtype in args.compile_dtypes else None
                run = run_group(group, dtype, device, args.warmup, args.steps, compile=mode,
                                levers=levers, profile=args.profile)
            except Exception as exc:  # e.g. out of memory: recorded, the other runs go on
                results["errors"].append({"group": group["name"], "dtype": dtype,
                                          "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
                print(f"  failed: {type(exc).__name__}: {exc}", flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            results["runs"].append({**run, "cudnn_benchmark": autotune})
            for x in run["models"]:
                peak = "" if x["peak_mem_mib"] is None else f", peak {x['peak_mem_mib']:.0f} MiB"
                print(f"  {x['label']}: {x['median_step_s'] * 1e3:.0f} ms/step, {x['img_per_s']:.1f} img/s{peak}",
                      flush=True)
                for lever, e in x.get("levers_engaged", {}).items():
                    print(f"    {verdict(lever, e)}", flush=True)
            (out / "gpu_train.json").write_text(json.dumps(results, indent=1))
            (out / "gpu_train.md").write_text(markdown(results))
    (out / "gpu_train.json").write_text(json.dumps(results, indent=1))
    (out / "gpu_train.md").write_text(markdown(results))
    print(f"wrote {out}/gpu_train.json and {out}/gpu_train.md")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
