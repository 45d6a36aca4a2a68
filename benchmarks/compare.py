"""Train every architecture under one protocol and report the comparison (docs/comparison.md).

    python benchmarks/compare.py --protocol camvid-cpu                  # the protocol's whole plan
    python benchmarks/compare.py --protocol camvid-cpu --models fcn8s deeplabv3plus --seeds 0 1 2
    python benchmarks/compare.py --protocol camvid-cpu --dry-run        # the runs and their state
    python benchmarks/compare.py --protocol camvid-cpu --report         # tables + plots only

A protocol is a config family: ``configs/_base_/protocols/<protocol>.yaml`` holds everything the
runs share (data, crop, augmentation, loss, schedule, evaluation) and
``configs/protocols/<protocol>/<model>.yaml`` one file per architecture (its ``model:`` only, from
``configs/_base_/protocols/models/``). Each run (model, seed) trains in its own subprocess
(``python -m segzoo train``, so one crash does not stop the others) in
``work_dirs/protocols/<protocol>/<model>/seed<k>/`` and, once finished, leaves one result JSON in
``benchmarks/results/protocols/<protocol>/<model>_seed<k>.json`` (schema: :func:`collect`).

Resumable: a run with a result JSON is skipped; a finished run folder without one is only
collected; an unfinished folder is resumed by the engine from ``checkpoints/last.pt``. Run the
same command again after a kill, a reboot or a crash. ``--report`` rebuilds the tables and plots
of docs/comparison.md from the result JSONs alone (:mod:`compare_report`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

# the named semantic architectures, in table order
ARCH_ORDER = ("fcn32s", "fcn16s", "fcn8s", "fcn", "unet", "deeplabv2", "deeplabv3", "deeplabv3plus", "pspnet")
CLAIMED = ("fcn32s", "fcn16s", "fcn8s", "deeplabv2", "deeplabv3", "deeplabv3plus")  # 3 seeds each


@dataclass(frozen=True)
class Protocol:
    """What the runner needs besides the configs: the FLOPs input size and the default seeds
    (``seeds`` for every model, then ``extra_seeds`` for the models in ``multi_seed``)."""

    name: str
    flops_size: tuple[int, int]
    seeds: tuple[int, ...] = (0,)
    extra_seeds: tuple[int, ...] = ()
    multi_seed: tuple[str, ...] = ()


PROTOCOLS = {
    "camvid-cpu": Protocol("camvid-cpu", (360, 480), extra_seeds=(1, 2), multi_seed=CLAIMED),
    "camvid-full": Protocol("camvid-full", (360, 480), extra_seeds=(1, 2), multi_seed=CLAIMED),
    "shapes-smoke": Protocol("shapes-smoke", (64, 64)),
    # the papers' ablations on camvid-cpu: variants of the protocol's models, seed 0
    "camvid-cpu-ablations": Protocol("camvid-cpu-ablations", (360, 480)),
    # semantic vs instance on touching nuclei (docs/comparison.md)
    "dsb2018-cpu": Protocol("dsb2018-cpu", (256, 256)),
    "dsb2018-smoke": Protocol("dsb2018-smoke", (64, 64)),
}


@dataclass(frozen=True)
class Model:
    """One config of a protocol: ``name`` is the file stem, ``arch`` the registered model name."""

    name: str
    arch: str
    config: Path


@dataclass(frozen=True)
class Run:
    model: Model
    seed: int
    work_dir: Path
    result: Path

    @property
    def label(self) -> str:
        return f"{self.model.name} seed {self.seed}"

    def state(self) -> str:
        """``done`` (result JSON), ``trained`` (finished folder), ``partial`` (checkpoint to resume
        from), ``new``."""
        if self.result.is_file():
            return "done"
        if (self.work_dir / "metrics.json").is_file():
            return "trained"
        if (self.work_dir / "checkpoints" / "last.pt").is_file():
            return "partial"
        return "new"


def discover(config_dir: Path) -> list[Model]:
    """The protocol's model configs, in :data:`ARCH_ORDER` (others after, by name).

    Raises:
        SystemExit: no folder or no configs there.
    """
    from segzoo.config import load_config

    paths = sorted(config_dir.glob("*.yaml")) if config_dir.is_dir() else []
    if not paths:
        raise SystemExit(f"compare.py: no model configs in {config_dir}; a protocol needs "
                         "configs/protocols/<protocol>/<model>.yaml files")
    models = [Model(p.stem, load_config(p).model.name, p) for p in paths]
    rank = {a: i for i, a in enumerate(ARCH_ORDER)}
    return sorted(models, key=lambda m: (rank.get(m.arch, len(rank)), m.name))


def select(models: list[Model], names: list[str] | None) -> list[Model]:
    """Models named by config stem or architecture; SystemExit names the choices on a typo."""
    if not names:
        return models
    chosen = [m for m in models if m.name in names or m.arch in names]
    unknown = [n for n in names if not any(n in (m.name, m.arch) for m in models)]
    if unknown:
        raise SystemExit(f"compare.py: unknown model(s) {', '.join(unknown)}; this protocol has "
                         f"{', '.join(m.name for m in models)}")
    return chosen


def plan(protocol: Protocol, models: list[Model], seeds: list[int] | None, work_root: Path,
         results_dir: Path) -> list[Run]:
    """Runs in order: every model at the first seeds, then the extra seeds of the multi-seed
    models; with explicit ``seeds``, every model at each of them (seed-major)."""
    pairs = [(m, s) for s in seeds for m in models] if seeds else (
        [(m, s) for s in protocol.seeds for m in models]
        + [(m, s) for s in protocol.extra_seeds for m in models if m.arch in protocol.multi_seed])
    return [Run(m, s, work_root / m.name / f"seed{s}", results_dir / f"{m.name}_seed{s}.json")
            for m, s in pairs]


# ----------------------------------------------------------------------------- training
def train_command(run: Run, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "segzoo", "train", str(run.model.config), "--work-dir",
            str(run.work_dir), "--set", f"train.seed={run.seed}", *overrides]


def train(run: Run, threads: int, overrides: list[str]) -> int:
    """Train (or resume) one run in a subprocess; console output appended to
    ``<work_dir>/console.log``, each attempt's wall time to ``<work_dir>/attempts.jsonl``.
    Returns the exit status."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads > 0:  # read by torch at start-up: intra-op threads of the training process
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    run.work_dir.mkdir(parents=True, exist_ok=True)
    cmd = train_command(run, overrides)
    start = time.time()
    with open(run.work_dir / "console.log", "a") as console:
        console.write(f"$ {' '.join(cmd)}\n")
        console.flush()
        rc = subprocess.call(cmd, cwd=REPO, env=env, stdout=console, stderr=subprocess.STDOUT)
    attempt = {"start": _iso(start), "wall_s": round(time.time() - start, 1), "rc": rc,
               "threads": threads, "host": platform.node()}
    with open(run.work_dir / "attempts.jsonl", "a") as f:
        f.write(json.dumps(attempt) + "\n")
    return rc


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def step_seconds(metrics_jsonl: Path) -> float:
    """Seconds spent in training steps (data loading included, evaluation and checkpoints not),
    from the engine's ``iter_time`` log rows; rows repeated by a resume count once."""
    rows = {r["iter"]: r for r in _jsonl(metrics_jsonl) if r.get("mode") == "train" and "iter_time" in r}
    total, prev = 0.0, 0
    for it in sorted(rows):
        total += rows[it]["iter_time"] * (it - prev)
        prev = it
    return total


def git_commit() -> str | None:
    """The short hash of HEAD, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def model_cost(config_path: Path, num_classes: int, size: tuple[int, int]) -> tuple[int, float]:
    """(parameters, GFLOPs of one forward at ``size``) of a run's model, built on the meta device
    (no weights are read); GFLOPs None when the model cannot run on meta tensors (Mask R-CNN)."""
    import torch

    from segzoo.bench.flops import count_flops, count_params
    from segzoo.config import load_config
    from segzoo.config.validate import registries
    from segzoo.registry import MODELS

    registries()
    cfg = load_config(config_path)
    kwargs = {k: v for k, v in cfg.model.kwargs.items() if k != "weights_backbone"}
    kwargs.setdefault("num_classes", num_classes)  # the run folder's config.yaml has it already
    with torch.device("meta"):
        model = MODELS.build(cfg.model.name, **kwargs)
    try:
        gflops = count_flops(model, size) / 1e9
    except Exception as exc:  # noqa: BLE001 - detectors: data-dependent ops cannot run on meta tensors
        print(f"compare.py: no FLOPs for {config_path}: {type(exc).__name__}: {str(exc)[:120]}", file=sys.stderr)
        gflops = None
    return count_params(model), gflops


SEMANTIC_KEYS = ("mIoU", "mean_acc", "pixel_acc", "fwIoU", "mDice", "mBIoU")
# kept when the evaluation gave them: the instance row and the nuclei metrics (dsb2018 protocols)
EXTRA_KEYS = ("mask_AP", "mask_AP50", "mask_AP75", "bbox_AP", "fg_IoU", "fg_Dice", "fg_BIoU",
              "dsb_mAP", "merged", "merged_frac", "num_objects", "num_pred_objects")


def collect(run: Run, protocol: Protocol, threads: int) -> dict:
    """The result JSON of a finished run folder. Keys: protocol, model, arch, backbone, seed,
    config, work_dir, iterations, metrics (mIoU, mean_acc, pixel_acc, fwIoU, mDice, mBIoU as
    fractions 0..1, and the :data:`EXTRA_KEYS` the evaluation gave), task, per_class (IoU, acc, bIoU: class name -> fraction or null), params,
    gflops, flops_size [H, W], train_wall_s (all attempts), train_step_s, attempts,
    latency_ms (null: filled from ``segzoo bench``), threads, commit, machine, torch, finished."""
    import torch

    from segzoo.bench.machine import cpu_model

    wd = run.work_dir
    metrics = json.loads((wd / "metrics.json").read_text())
    attempts = _jsonl(wd / "attempts.jsonl")
    num_classes = len(metrics["IoU"])
    params, gflops = model_cost(wd / "config.yaml", num_classes, protocol.flops_size)
    from segzoo.config import load_config

    cfg = load_config(wd / "config.yaml")
    return {
        "protocol": protocol.name, "model": run.model.name, "arch": run.model.arch,
        "backbone": cfg.model.kwargs.get("backbone"), "seed": run.seed,
        "config": rel_path(run.model.config), "work_dir": rel_path(wd),
        "iterations": metrics.get("iteration"),
        "metrics": {k: metrics.get(k) for k in SEMANTIC_KEYS + tuple(k for k in EXTRA_KEYS if k in metrics)},
        "per_class": {k: metrics.get(k) for k in ("IoU", "acc", "bIoU")},
        "task": metrics.get("task"),
        "params": params, "gflops": None if gflops is None else round(gflops, 3),
        "flops_size": list(protocol.flops_size),
        "train_wall_s": round(sum(a.get("wall_s", 0.0) for a in attempts), 1) if attempts else None,
        "train_step_s": round(step_seconds(wd / "metrics.jsonl"), 1),
        "attempts": len(attempts), "latency_ms": None, "threads": threads,
        "commit": git_commit(), "machine": cpu_model(), "torch": torch.__version__,
        "finished": _iso((wd / "metrics.json").stat().st_mtime),
    }


def rel_path(path: Path) -> str:
    """``path`` relative to the repository (or to the current folder), else absolute."""
    for root in (REPO, Path.cwd()):
        try:
            return str(Path(path).resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return str(path)


def write_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


def run_protocol(protocol: Protocol, runs: list[Run], *, threads: int = 1, overrides: list[str] = (),
                 log=print) -> dict[str, str]:
    """Train, resume, collect or skip each run, in order; returns ``label -> outcome`` (``skipped``,
    ``collected``, ``trained``, ``resumed``, ``failed (rc N)``, ``collect failed``: trained, but its
    result JSON could not be built in this process, e.g. after ``segzoo`` was updated under a
    long-running runner; the next invocation collects it)."""
    outcomes: dict[str, str] = {}
    for i, run in enumerate(runs, 1):
        state = run.state()
        head = f"[{i}/{len(runs)}] {run.label}"
        if state == "done":
            log(f"{head}: finished ({rel_path(run.result)}), skipped")
            outcomes[run.label] = "skipped"
            continue
        if state in ("new", "partial"):
            log(f"{head}: {'resuming' if state == 'partial' else 'training'} in {rel_path(run.work_dir)} "
                f"({_iso(time.time())})")
            rc = train(run, threads, list(overrides))
            if rc != 0 or not (run.work_dir / "metrics.json").is_file():
                log(f"{head}: FAILED (exit status {rc}); see {rel_path(run.work_dir / 'console.log')}")
                outcomes[run.label] = f"failed (rc {rc})"
                continue
        try:  # in this process: a segzoo updated under a long-lived runner may not read the new run
            result = collect(run, protocol, threads)
        except Exception as exc:  # the trained folder stays; the next invocation collects it
            log(f"{head}: trained, but collecting its result failed ({type(exc).__name__}: {exc}); "
                "run the same command again to collect it (nothing is retrained)")
            outcomes[run.label] = "collect failed"
            continue
        write_result(run.result, result)
        outcomes[run.label] = {"new": "trained", "partial": "resumed", "trained": "collected"}[state]
        log(f"{head}: {outcomes[run.label]}, result {rel_path(run.result)}")
    return outcomes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", required=True, help=f"one of {', '.join(PROTOCOLS)}")
    p.add_argument("--models", nargs="+", help="config stems or architectures (default: all)")
    p.add_argument("--seeds", nargs="+", type=int,
                   help="seeds for every model (default: the protocol's plan: seed 0 for all, then "
                        "seeds 1 and 2 for the FCN and DeepLab triples)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per training process (0: torch's default)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="extra config overrides for every run (changes the protocol: use for checks)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state, train nothing")
    p.add_argument("--report", action="store_true", help="only rebuild docs/comparison.md from the results")
    p.add_argument("--no-report", action="store_true", help="do not rebuild the report after training")
    p.add_argument("--config-dir", type=Path, help="default configs/protocols/<protocol>")
    p.add_argument("--work-root", type=Path, help="default work_dirs/protocols/<protocol>")
    p.add_argument("--results-dir", type=Path, help="default benchmarks/results/protocols/<protocol>")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "comparison.md")
    p.add_argument("--img-dir", type=Path, default=REPO / "docs" / "img")
    return p


def report(protocol: str, results_dir: Path, doc: Path, img_dir: Path) -> None:
    """Rebuild the protocol's section of ``doc`` from its result JSONs (the nuclei protocols have
    their own tables: :mod:`dsb_report`)."""
    if protocol.startswith("dsb2018"):
        import dsb_report

        dsb_report.update_doc(protocol, results_dir, doc, img_dir)
    else:
        import compare_report

        compare_report.update_doc(protocol, results_dir, doc, img_dir)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a redirected log at once
    if args.protocol not in PROTOCOLS:
        raise SystemExit(f"compare.py: unknown protocol {args.protocol!r}; one of {', '.join(PROTOCOLS)}")
    protocol = PROTOCOLS[args.protocol]
    results_dir = args.results_dir or REPO / "benchmarks" / "results" / "protocols" / protocol.name
    if args.report:
        report(protocol.name, results_dir, args.doc, args.img_dir)
        print(f"report for {protocol.name} written to {args.doc}")
        return 0
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)  # this process only counts FLOPs, but stay frugal
    models = select(discover(args.config_dir or REPO / "configs" / "protocols" / protocol.name), args.models)
    runs = plan(protocol, models, args.seeds, args.work_root or REPO / "work_dirs" / "protocols" / protocol.name,
                results_dir)
    if args.dry_run:
        for i, run in enumerate(runs, 1):
            print(f"[{i}/{len(runs)}] {run.label}: {run.state()}  ({rel_path(run.work_dir)})")
        print("command per run: " + " ".join(train_command(runs[0], args.set)) if runs else "no runs")
        return 0
    outcomes = run_protocol(protocol, runs, threads=args.threads, overrides=args.set)
    failed = [k for k, v in outcomes.items() if v.startswith("failed")]
    if not args.no_report:
        report(protocol.name, results_dir, args.doc, args.img_dir)
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} runs finished"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
