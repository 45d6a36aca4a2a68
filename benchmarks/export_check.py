"""ONNX export check of every registered semantic model (docs/deployment.md).

Each model of the camvid-cpu protocol (every architecture on MobileNetV2), a composed model and
U-Net's own encoder in both paddings is built (random weights: the check is about the graph, not
the accuracy), exported with dynamic batch, height and width at one size, then run with
onnxruntime at three other sizes (97x131, 360x480, 513x513 by default) against PyTorch. One JSON per
model goes to ``benchmarks/results/export/<model>.json`` (status, smallest accepted size, max |diff|
per size, export seconds, versions, machine); a failure is recorded with its error.

    python benchmarks/export_check.py [--models fcn8s_mobilenetv2 ...] [--size 512 512] [--out DIR]
    python benchmarks/export_check.py --table
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
REPO = Path(__file__).resolve().parents[1]
# the models of the camvid-cpu protocol (every architecture on MobileNetV2, docs/comparison.md),
# one composed model, and U-Net's own encoder in both paddings (16 base channels: the paper's 64 is
# 16x the compute and checks the same graph)
CONFIGS = [*sorted((REPO / "configs" / "protocols" / "camvid-cpu").glob("*.yaml")),
           REPO / "configs" / "composed" / "psphead-fcnaux_mobilenetv2_camvid-480x360.yaml"]
EXTRA = [("unet-original-same", "unet", {"base_channels": 16}),
         ("unet-original-valid", "unet", {"base_channels": 16, "padding": "valid"})]


def cases() -> list[tuple[str, str, dict]]:
    """(case name, model name, builder kwargs) per checked model."""
    from segzoo.config import load_config

    out = []
    for path in CONFIGS:
        cfg = load_config(path)
        kwargs = {k: v for k, v in cfg.model.kwargs.items() if k not in ("weights_backbone", "num_classes")}
        if isinstance(kwargs.get("backbone"), dict):  # random weights: no pretrained file needed
            kwargs["backbone"] = {k: v for k, v in kwargs["backbone"].items() if k != "weights"}
        out.append((path.stem, cfg.model.name, kwargs))
    return out + EXTRA


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
    with torch.no_grad():  # trained-like BN statistics and classifier scale, so logits are not ~0
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        for p in model.parameters():
            if p.dim() == 4 and p.shape[0] == num_classes:  # the classifiers (std 0.01 at init)
                p.normal_(0, 0.1)
    record["params"] = sum(p.numel() for p in model.parameters())
    t = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = export_onnx(model, Path(tmp) / "m.onnx", size, sizes=SIZES)
            record["onnx_mb"] = round((Path(tmp) / "m.onnx").stat().st_size / 2**20, 1)
        record.update(status="ok", min_size=result["min_size"], diffs=result["diffs"],
                      logit_scales=result["logit_scales"], max_abs_diff=result["max_abs_diff"])
    except Exception as exc:  # recorded, the next model goes on
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
    record["seconds"] = round(time.perf_counter() - t, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{case}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def table(folder: Path = RESULTS) -> str:
    """Markdown table of the recorded results (docs/deployment.md)."""
    rows = ["| model | config | status | min H, W | max abs diff at 97x131 / 360x480 / 513x513 | max abs logit | ONNX MB | export + check s |",
            "|---|---|---|---|---|---|---|---|"]
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        diffs = " / ".join(f"{d:.1e}" for d in r.get("diffs", [])) or r.get("error", "")[:120]
        scale = f"{max(r['logit_scales']):.1f}" if r.get("logit_scales") else ""
        rows.append(f"| {r['model']} | {r['case']} | {r['status']} | {r.get('min_size', '')} | {diffs} | "
                    f"{scale} | {r.get('onnx_mb', '')} | {r['seconds']} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    all_cases = {c: (n, kw) for c, n, kw in cases()}
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(all_cases), choices=list(all_cases))
    p.add_argument("--size", nargs=2, type=int, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--num-classes", type=int, default=12)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--table", action="store_true", help="only print the Markdown table of the results")
    args = p.parse_args(argv)
    if args.table:
        print(table(args.out))
        return 0
    failed = 0
    for case in args.models:
        name, kwargs = all_cases[case]
        r = check(case, name, kwargs, tuple(args.size), args.num_classes, args.out)
        failed += r["status"] != "ok"
        diffs = ", ".join(f"{d:.1e}" for d in r.get("diffs", []))
        print(f"{case:<28} {r['status']:<7} {r['seconds']:>7.1f}s  max|diff| per size: "
              f"{diffs or r.get('error', '')[:200]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
