"""ONNX export check of every registered semantic model (docs/deployment.md).

Each model is built in its default (paper) configuration (random weights: the check is about the
graph, not the accuracy), exported with dynamic batch, height and width at one size, then run with
onnxruntime at three other sizes (97x131, 360x480, 513x513 by default) against PyTorch. One JSON per
model goes to ``benchmarks/results/export/<model>.json`` (status, smallest accepted size, max |diff|
per size, export seconds, versions, machine); a failure is recorded with its error.

    python benchmarks/export_check.py [--models fcn8s pspnet ...] [--size 512 512] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "export"
SIZES = [(97, 131), (360, 480), (513, 513)]
# composed models have no default architecture: one documented composition
KWARGS = {"encoder_decoder": {"backbone": "resnet50", "decode_head": {"name": "psp_head"},
                              "auxiliary_head": None}}
EXTRA = [("unet-valid", "unet", {"padding": "valid"})]


def check(case: str, name: str, kwargs: dict, size: tuple[int, int], num_classes: int, out: Path) -> dict:
    import onnxruntime

    import segzoo
    from segzoo.export import export_onnx

    record = {"case": case, "model": name, "kwargs": kwargs, "num_classes": num_classes,
              "export_size": list(size), "sizes": [list(s) for s in SIZES],
              "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
              "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip()}
    torch.manual_seed(0)
    model = segzoo.build_model(name, num_classes=num_classes, **kwargs).eval()
    record["params"] = sum(p.numel() for p in model.parameters())
    t = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = export_onnx(model, Path(tmp) / "m.onnx", size, sizes=SIZES)
            record["onnx_mb"] = round((Path(tmp) / "m.onnx").stat().st_size / 2**20, 1)
        record.update(status="ok", min_size=result["min_size"], diffs=result["diffs"],
                      max_abs_diff=result["max_abs_diff"])
    except Exception as exc:  # recorded, the next model goes on
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
    record["seconds"] = round(time.perf_counter() - t, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{case}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    from segzoo.registry import MODELS

    names = MODELS.names(task="semantic", test_only=None)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=[*names, *(c for c, _, _ in EXTRA)])
    p.add_argument("--size", nargs=2, type=int, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--num-classes", type=int, default=12)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    extra = {c: (n, kw) for c, n, kw in EXTRA}
    failed = 0
    for case in args.models:
        name, kwargs = extra.get(case, (case, KWARGS.get(case, {})))
        r = check(case, name, kwargs, tuple(args.size), args.num_classes, args.out)
        failed += r["status"] != "ok"
        diffs = ", ".join(f"{d:.1e}" for d in r.get("diffs", []))
        print(f"{case:<16} {r['status']:<7} {r['seconds']:>7.1f}s  max|diff| per size: {diffs or r.get('error', '')[:200]}",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
