"""Write the speed section of docs/benchmarks.md from committed ``segzoo bench`` results.

    python benchmarks/speed_summary.py benchmarks/results/cpu-epyc-2core-512/bench.json \
        benchmarks/results/cpu-epyc-2core-512-b/bench.json

Several runs on the same machine (say, models benchmarked later with other settings) are merged:
their model rows and peer pairs side by side, each run's command, date, load average and settings
listed. The section (between ``<!-- speed:start -->`` and ``<!-- speed:end -->``) holds the machine,
the commands, the models table, the ratio against each peer and which registered models no run
covers; each run's full report stays next to its JSON as ``bench.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segzoo.bench.report import machine_lines, models_table, peers_table, replace_section  # noqa: E402
from segzoo.registry import MODELS  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"


def merge(parts: list[dict]) -> dict:
    """One results dict of several runs: the first run's machine and settings (batches: the union),
    every run's model rows and peer pairs (a later run's measurements of a model, batch by batch,
    and a later timed pair replace an earlier one of the same label or key)."""
    merged = json.loads(json.dumps(parts[0]))
    batches = sorted({b for p in parts for b in p["settings"]["batches"]})
    merged["settings"]["batches"] = batches
    models: dict[str, dict] = {}
    for p in parts:  # a later run adds to (or replaces) an earlier row's measurements
        for row in p["models"]:
            old = models.get(row["label"], {})
            models[row["label"]] = {**old, **row, "infer": {**(old.get("infer") or {}), **(row.get("infer") or {})}}
    peers: dict[str, dict] = {}
    for p in parts:
        for pair in p["peers"]:  # a timed pair replaces an untimed one ("needs maskrcnn"), not vice versa
            if pair.get("status") == "ready" or peers.get(pair["key"], {}).get("status") != "ready":
                peers[pair["key"]] = pair
    merged["models"] = sorted(models.values(), key=lambda r: r["label"])
    merged["peers"] = list(peers.values())
    return merged


def sizes(results: dict) -> str:
    """The input sizes a run used (instance models run at ``--instance-size``)."""
    found = {tuple(r["size"]) for r in [*results["models"], *results["peers"]] if r.get("size")}
    found = found or {tuple(results["settings"]["size"])}
    return ", ".join(f"{h}x{w}" for h, w in sorted(found))


def run_line(i: int, results: dict, source: str) -> str:
    s, m = results["settings"], results["machine"]
    if not results["models"]:  # a peers-only run (--models none)
        s = {**s, "batches": [s.get("peer_batch", 1)], "train": False, "large_batch_repeats": None}
    extras = []
    if not s.get("train"):
        extras.append("no training step")
    if not s.get("peers"):
        extras.append("no peers")
    if not results["models"]:
        extras.append("peer pairs only")
    return (f"* Run {i} ([{Path(source).parent.name}]({source})): `{s.get('command') or 'segzoo bench'}`; "
            f"{m['date']}, segzoo {m.get('segzoo_commit') or 'n/a'}, load average {m.get('load_average')} "
            f"-> {m.get('load_average_end')}; input {sizes(results)}, batches {s['batches']}, "
            f"{s['warmup']} warm-up + {s['repeats']} timed runs"
            + (f" ({s.get('large_batch_repeats')} at larger batches)" if s.get("large_batch_repeats") else "")
            + (f", training step at batch {s['train_batch']} ({s.get('train_repeats') or s['repeats']} runs)"
               if s.get("train") else "")
            + (f"; {', '.join(extras)}" if extras else "") + ".")


def coverage(results: dict) -> str:
    """Which registered models have a row, and which have none."""
    registered = [n for n in MODELS.names() if not MODELS.entry(n).meta.get("test_only")]
    have = {row["candidate"]["name"] for row in results["models"] if "error" not in row}
    missing = [n for n in registered if n not in have]
    text = f"Registered models benchmarked: {len(registered) - len(missing)} of {len(registered)}"
    return text + (f" (not benchmarked: {', '.join(f'`{n}`' for n in missing)})." if missing else " (all).")


def section(parts: list[dict], sources: list[str]) -> str:
    results = merge(parts)
    head = machine_lines(parts[0])[:2]
    return "\n".join([
        *head,
        *(run_line(i + 1, p, s) for i, (p, s) in enumerate(zip(parts, sources))),
        "",
        coverage(results),
        "",
        "#### Models",
        "",
        models_table(results),
        "",
        "#### Against torchvision and smp (ratio ours / peer, interleaved in one process)",
        "",
        peers_table(results),
    ])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="bench.json of segzoo bench runs (same machine)")
    parser.add_argument("--doc", default=str(DOC))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    doc = Path(args.doc)
    parts, sources = [], []
    for name in args.results:
        path = Path(name)
        parts.append(json.loads(path.read_text()))
        try:
            sources.append(str(Path("..") / path.resolve().relative_to(doc.resolve().parent.parent)))
        except ValueError:
            sources.append(str(path))
    replace_section(doc, "speed", section(parts, sources))
    print(f"updated {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
