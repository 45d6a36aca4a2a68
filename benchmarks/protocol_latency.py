"""CPU latency of every model of a protocol, for the latency column of docs/comparison.md.

    python benchmarks/protocol_latency.py                               # camvid-cpu, 360x480, 7 rounds
    python benchmarks/protocol_latency.py --protocol camvid-cpu --size 360 480 --repeats 7 --threads 1

Each model of ``configs/protocols/<protocol>/`` is built from its config (random weights: the
backbone weights file is not read, so latency does not depend on training), in eval mode, batch 1,
and timed with segzoo's bench machinery (:mod:`segzoo.bench.timing`): one eval forward under
``torch.inference_mode``, all models in ONE process, their runs interleaved (round r runs them in
an order rotated by r, so a load change on a shared machine hits every model alike), ``warmup``
untimed rounds, then the median over ``repeats`` timed rounds. ``torch.set_num_threads(threads)``
(default 1, as the protocol trains).

Writes ``benchmarks/results/protocols/<protocol>/latency.json`` (schema: :func:`measure`); the
per-run result JSONs are not touched (``compare_report`` reads this file for the latency column
and the accuracy-vs-latency plot).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from compare import git_commit, rel_path  # noqa: E402


def build(config: Path, num_classes: int):
    """The config's model with random weights (``weights_backbone`` dropped), in eval mode."""
    from segzoo.config import load_config
    from segzoo.config.validate import registries
    from segzoo.registry import MODELS

    registries()
    cfg = load_config(config)
    kwargs = {k: v for k, v in cfg.model.kwargs.items() if k != "weights_backbone"}
    kwargs.setdefault("num_classes", num_classes)
    return cfg.model.name, MODELS.build(cfg.model.name, **kwargs).eval()



def measure(configs: list[Path], *, size: tuple[int, int], repeats: int, warmup: int, threads: int,
            num_classes: int, protocol: str, log=print) -> dict:
    """Time the configs' models; returns the latency.json content: protocol, size [H, W], batch
    (1), threads, repeats, warmup, dtype (fp32), device (cpu), machine (CPU model), torch, commit,
    load_average (before and after), date, wall_s, and ``models``: config stem -> {arch, config,
    latency_ms (median), p25_ms, p75_ms, min_ms, max_ms, n}."""
    import torch

    from segzoo.bench.machine import cpu_model, load_average
    from segzoo.bench.timing import inference_step, run_interleaved, summarize

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    images = torch.randn(1, 3, *size)
    names, archs, steps = [], [], []
    for path in configs:
        arch, model = build(path, num_classes)
        names.append(path.stem)
        archs.append(arch)
        steps.append(inference_step(model, images, None))
    load_before = load_average()
    start = time.time()
    log(f"timing {len(steps)} models at {size[0]}x{size[1]}, {threads} thread(s), "
        f"{warmup} warm-up + {repeats} rounds, interleaved")
    times = run_interleaved(steps, warmup=warmup, repeats=repeats, device=torch.device("cpu"))
    models = {}
    for name, arch, path, ts in zip(names, archs, configs, times):
        s = summarize([1000 * t for t in ts])
        models[name] = {"arch": arch, "config": rel_path(path), "latency_ms": round(s["median"], 2),
                        "p25_ms": round(s["p25"], 2), "p75_ms": round(s["p75"], 2),
                        "min_ms": round(s["min"], 2), "max_ms": round(s["max"], 2), "n": s["n"]}
        log(f"  {name}: {s['median']:.1f} ms (p25 {s['p25']:.1f}, p75 {s['p75']:.1f})")
    return {
        "protocol": protocol, "size": list(size), "batch": 1, "threads": threads, "repeats": repeats,
        "warmup": warmup, "dtype": "fp32", "device": "cpu", "weights": "random (latency does not depend on them)",
        "machine": cpu_model(), "torch": torch.__version__, "commit": git_commit(),
        "load_average": {"before": load_before, "after": load_average()},
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_s": round(time.time() - start, 1), "models": models,
    }



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="camvid-cpu")
    p.add_argument("--config-dir", type=Path, help="default configs/protocols/<protocol>")
    p.add_argument("--models", nargs="+", help="config stems or architectures (default: all)")
    p.add_argument("--size", nargs=2, type=int, default=[360, 480], metavar=("H", "W"))
    p.add_argument("--repeats", type=int, default=7, help="timed interleaved rounds (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--num-classes", type=int, default=11)
    p.add_argument("--out", type=Path, help="default benchmarks/results/protocols/<protocol>/latency.json")
    args = p.parse_args(argv)
    import compare

    models = compare.select(compare.discover(args.config_dir or REPO / "configs" / "protocols" / args.protocol),
                            args.models)
    result = measure([m.config for m in models], size=tuple(args.size), repeats=args.repeats,
                     warmup=args.warmup, threads=args.threads, num_classes=args.num_classes,
                     protocol=args.protocol)
    out = args.out or REPO / "benchmarks" / "results" / "protocols" / args.protocol / "latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {rel_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
