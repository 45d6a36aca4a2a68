"""Write the speed section of docs/benchmarks.md from a committed ``segzoo bench`` result.

    python benchmarks/speed_summary.py benchmarks/results/cpu-epyc-2core-512/bench.json

The section (between ``<!-- speed:start -->`` and ``<!-- speed:end -->``) holds the machine,
the command, the models table and the ratio against each peer; the full report stays next to the
JSON as ``bench.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segzoo.bench.report import machine_lines, models_table, peers_table, replace_section  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"


def section(results: dict, source: str) -> str:
    s = results["settings"]
    return "\n".join([
        *machine_lines(results),
        f"* Command: `{s.get('command') or 'segzoo bench'}`",
        f"* Full results: [{source}]({source}) (JSON: every timed run) and `bench.md` next to it.",
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
    parser.add_argument("results", help="bench.json of a segzoo bench run")
    parser.add_argument("--doc", default=str(DOC))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = Path(args.results)
    results = json.loads(path.read_text())
    doc = Path(args.doc)
    try:
        source = str(path.resolve().relative_to(doc.resolve().parent.parent))
        source = "../" + source
    except ValueError:
        source = str(path)
    replace_section(doc, "speed", section(results, source))
    print(f"updated {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
