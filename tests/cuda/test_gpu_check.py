"""The GPU check script (`make gpu-check`) as a dry run on the CPU: every step runs at tiny sizes
and writes its files, so the script cannot rot between GPU loans (docs/benchmarks.md)."""

import json
import os
import subprocess
import sys

from conftest import REPO


def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / "res"
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "SEGZOO_CUDA_TESTS_ON_CPU")}
    env["PYTHON"] = sys.executable  # the interpreter running the tests, wherever its venv lives
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--device", "cpu", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench-bf16.json", "bench-bf16.md", "bench-fp32.json", "bench-fp32.md",
                     "check.log", "gpu_train.json", "gpu_train.md"]
    log = (out / "check.log").read_text()
    assert "=== tests: exit 0" in log and "no CUDA device" in log  # collected, skipped on the CPU
    assert "all steps passed" in log
    train = json.loads((out / "gpu_train.json").read_text())
    assert not train["errors"] and {r["group"] for r in train["runs"]} == {"semantic", "instance"}
    labels = {m["label"] for r in train["runs"] for m in r["models"]}
    assert "torchvision deeplabv3_resnet50" in labels and "torchvision maskrcnn_resnet50_fpn" in labels
    for r in train["runs"]:
        for m in r["models"]:
            assert m["img_per_s"] > 0 and all(x == x for x in m["losses"])
    bench = json.loads((out / "bench-bf16.json").read_text())
    assert bench["settings"]["dtype"] == "bf16" and bench["settings"]["in_process"]
    row = bench["models"][0]
    assert row["infer"]["1"]["candidates"][0]["seconds"]["median"] > 0 and "deploy" in row
    assert bench["peers"] and bench["peers"][0]["run"]["candidates"][1]["label"].startswith("smp Unet")
