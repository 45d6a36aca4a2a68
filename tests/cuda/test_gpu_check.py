"""The GPU check script (`make gpu-check`) as a dry run on the CPU: every step runs at tiny sizes
and writes its files, so the script cannot rot between GPU loans (docs/benchmarks.md)."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from conftest import REPO
from helpers.version_marks import needs_keypoint_transforms


@needs_keypoint_transforms  # the parity step trains Keypoint R-CNN
def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / "res"
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "SEGZOO_CUDA_TESTS_ON_CPU")}
    env["PYTHON"] = sys.executable  # the interpreter running the tests, wherever its venv lives
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--device", "cpu", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench-bf16.json", "bench-bf16.md", "bench-deploy-maskrcnn.json", "bench-deploy-maskrcnn.md",
                     "bench-deploy-semantic.json", "bench-deploy-semantic.md", "bench-fp32.json", "bench-fp32.md",
                     "check.log", "detector_postprocess.json", "detector_postprocess.md", "gpu_camvid.json",
                     "gpu_camvid.md", "gpu_parity.json", "gpu_parity.md", "gpu_train.json", "gpu_train.md",
                     "gpu_train_autotune.json", "gpu_train_autotune.md", "gpu_train_compile.json",
                     "gpu_train_compile.md"]
    log = (out / "check.log").read_text()
    assert "=== tests: exit 0" in log and "no CUDA device" in log  # collected, skipped on the CPU
    assert "pytest -m cuda" in log and " -n 2" in log  # in pytest-xdist workers (TEST_WORKERS)
    assert "all steps passed" in log
    train = json.loads((out / "gpu_train.json").read_text())
    assert not train["errors"] and {r["group"] for r in train["runs"]} == {"semantic", "instance"}
    labels = {m["label"] for r in train["runs"] for m in r["models"]}
    assert "torchvision deeplabv3_resnet50" in labels and "torchvision maskrcnn_resnet50_fpn" in labels
    for r in train["runs"]:
        for m in r["models"]:
            assert m["img_per_s"] > 0 and all(x == x for x in m["losses"])
    # DeepLab v3+ alone, next to its torch.compile'd twins (Dynamo only on the CPU), profiled
    fp32, half = json.loads((out / "gpu_train_compile.json").read_text())["runs"]
    assert (fp32["dtype"], half["dtype"]) == ("fp32", "fp16-cl")  # the GPU: fp32, bf16-cl, fp16-cl
    assert [m["compile"] for m in fp32["models"]] == [None]  # compiled twins in --compile-dtypes only
    assert [m["compile"] for m in half["models"]] == [None] + ["backend:eager"] * 3
    assert [m["levers"] for m in half["models"]] == [[], [], ["aten-resize"], ["aten-resize", "depthwise-taps"]]
    assert all(m["profile"] for r in (fp32, half) for m in r["models"])
    # the detector pair again with cuDNN autotuning on (the train step leaves it off for detectors)
    assert [r["cudnn_benchmark"] for r in train["runs"]] == [True, False]
    (run,) = json.loads((out / "gpu_train_autotune.json").read_text())["runs"]
    assert (run["group"], run["dtype"], run["cudnn_benchmark"]) == ("instance", "fp32", True)
    bench = json.loads((out / "bench-bf16.json").read_text())
    assert bench["settings"]["dtype"] == "bf16" and bench["settings"]["in_process"]
    row = bench["models"][0]
    assert row["infer"]["1"]["candidates"][0]["seconds"]["median"] > 0 and "deploy" in row
    assert bench["peers"] and bench["peers"][0]["run"]["candidates"][1]["label"].startswith("smp Unet")
    # bf16 against fp32 curves (one tiny U-Net here; every registered model on the GPU)
    parity = json.loads((out / "gpu_parity.json").read_text())
    (unet,) = parity["models"]
    assert unet["verdict"] == "tracks" and len(unet["fp32"]) == len(unet["bf16"]) == parity["steps"]
    # CamVid, time-budgeted, on a synthetic pack in the CamVid layout (real CamVid on the GPU)
    camvid = json.loads((out / "gpu_camvid.json").read_text())
    assert camvid["max_iters"] >= camvid["probe_iters"] and 0 <= camvid["val"]["mIoU"] <= 1
    assert camvid["val"]["num_images"] == 4 and camvid["data"]["splits"]["val"]["images"] == 4
    # semantic deploy in bf16 and compiled against the peer in fp32
    deploy = json.loads((out / "bench-deploy-semantic.json").read_text())
    assert deploy["settings"]["deploy_dtype"] == "bf16" and deploy["settings"]["deploy_compile"] == "backend:eager"
    (pair,) = deploy["peers"]
    assert [c["label"] for c in pair["run"]["candidates"]][2].endswith("[deploy]")
    assert "autocast bf16, torch.compile mode backend:eager" in (out / "bench-deploy-semantic.md").read_text()
    # Mask R-CNN deploy in float32 with a compiled backbone, its detections compared with eager
    deploy = json.loads((out / "bench-deploy-maskrcnn.json").read_text())
    (pair,) = deploy["peers"]
    assert pair["size"] == [64, 64] and deploy["settings"]["deploy_dtype"] is None
    assert "maskrcnn/resnet50 [deploy]" in pair["run"]["deploy_detections"]
    # mask pasting and per-class NMS both ways, alone and in a (tiny) Mask R-CNN, with the same results
    post = json.loads((out / "detector_postprocess.json").read_text())
    assert [r["case"].split(" ")[0] for r in post["rows"]] == ["paste", "per-class", "Mask"]
    assert all(r["ok"] and all(v["ms"] > 0 for v in r["variants"].values()) for r in post["rows"])
    model = post["rows"][2]["variants"]
    assert [v["host_syncs"] for v in model.values()] == sorted((v["host_syncs"] for v in model.values()), reverse=True)
    assert "aten::" in post["rows"][2]["profile"] and "Profile of one run" in (out / "detector_postprocess.md").read_text()


@needs_keypoint_transforms  # the parity step trains Keypoint R-CNN
def test_gpu_check_steps_are_selectable(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env["PYTHON"] = sys.executable
    bad = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--steps", "tests,benchx"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 2 and "unknown step benchx" in bad.stderr
    usage = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--help"], capture_output=True,
                           text=True, timeout=60, env=env)
    assert usage.returncode == 0 and "train_compile" in usage.stdout  # the whole comment block, no code
    assert usage.stdout.rstrip().endswith("The exit status is 0 only when every step run succeeded.")
    out = tmp_path / "res"
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--device", "cpu", "--quick",
                           "--steps", "parity", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["check.log", "gpu_parity.json", "gpu_parity.md"]
    assert "=== tests" not in (out / "check.log").read_text()
    # TRAIN_GROUPS keeps one group of the train step (the Mask R-CNN pair, next to train_autotune)
    out = tmp_path / "res-train"
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--device", "cpu", "--quick",
                           "--steps", "train", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env={**env, "TRAIN_GROUPS": "instance"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    train = json.loads((out / "gpu_train.json").read_text())
    assert [(r["group"], r["cudnn_benchmark"]) for r in train["runs"]] == [("instance", False)]


def test_gpu_check_packs_results_for_the_device_tool(tmp_path):
    # the device tool brings back at most 8 files from $OUT: the log and one archive
    env = {k: v for k, v in os.environ.items() if k != "SEGZOO_CUDA_TESTS_ON_CPU"}
    env.update(PYTHON=sys.executable, OUT=str(tmp_path / "out"), T_PARITY="1")
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--device", "cpu", "--quick",
                           "--steps", "parity,postprocess"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]  # parity stopped at 1 s
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["check.log", "results.tar"]
    with tarfile.open(tmp_path / "out" / "results.tar") as tar:
        names = sorted(Path(n).name for n in tar.getnames() if n != ".")
    # parity, stopped by SIGINT, may have written its partial curves first (on a loaded machine)
    assert {"detector_postprocess.json", "detector_postprocess.md"} <= set(names) <= {
        "detector_postprocess.json", "detector_postprocess.md", "gpu_parity.json", "gpu_parity.md"}
    log = (tmp_path / "out" / "check.log").read_text()
    assert "=== parity: exit 124" in log and "FAILED steps: parity(exit 124)" in log
