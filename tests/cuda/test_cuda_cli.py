"""`segzoo train` / `eval` / `predict` end to end on the GPU, resuming a GPU run on the CPU, and
DDP through torchrun (NCCL) -- part of `make gpu-check` (benchmarks/gpu_check.sh).

Marked ``cuda``; skipped with "no CUDA device" without one, unless ``SEGZOO_CUDA_TESTS_ON_CPU=1``
(the same commands on the CPU, to exercise this file's code without a GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
HAS_CUDA = torch.cuda.is_available()
ON_CPU = not HAS_CUDA and os.environ.get("SEGZOO_CUDA_TESTS_ON_CPU") == "1"
DEVICE = "cuda" if HAS_CUDA else "cpu"
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not (HAS_CUDA or ON_CPU), reason="no CUDA device")]

SEMANTIC = REPO / "configs/deeplabv3plus/deeplabv3plus_resnet18_shapes-64x64.yaml"
INSTANCE = REPO / "configs/maskrcnn/maskrcnn_resnet18_shapes-64x64.yaml"
TINY = ["data.train.dataset.num_images=8", "data.val.dataset.num_images=4", "data.num_workers=0",
        "data.train.batch_size=4", "data.val.batch_size=2", "train.log_interval=2",
        "train.eval_interval=0", "train.num_vis=1"]


def segzoo(*args: str, timeout: float = 300) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-m", "segzoo", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_train_eval_predict_semantic_bf16_channels_last(tmp_path):
    run = tmp_path / "run"
    amp = "bf16"
    segzoo("train", str(SEMANTIC), "--work-dir", str(run), "--set", *TINY, "train.max_iters=4",
           f"train.device={DEVICE}", f"train.amp={amp}", "train.channels_last=true")
    log = (run / "train.log").read_text()
    assert f"on {DEVICE}" in log, log[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["mIoU"] <= 1.0 or 0.0 <= metrics["mIoU"] <= 100.0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r.get("mode") == "train"]
    assert losses and all(x == x and abs(x) < 1e4 for x in losses)  # finite
    if HAS_CUDA:
        assert any("mem_mb" in r for r in rows)  # peak CUDA memory logged

    ckpt = run / "checkpoints/last.pt"
    out = segzoo("eval", str(SEMANTIC), "--checkpoint", str(ckpt), "--out", str(tmp_path / "e.json"),
                 "--set", *TINY, f"train.device={DEVICE}")
    evald = json.loads((tmp_path / "e.json").read_text())
    assert evald["num_images"] == 4 and abs(evald["mIoU"] - metrics["mIoU"]) < 1e-6, out

    from PIL import Image

    inputs = tmp_path / "images"
    inputs.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(2):
        pixels = (torch.rand(48, 64, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(inputs / f"im{i}.png")
    segzoo("predict", str(SEMANTIC), "--checkpoint", str(ckpt), "--input", str(inputs),
           "--output", str(tmp_path / "pred"), "--batch-size", "2", "--set", f"train.device={DEVICE}")
    labels = sorted((tmp_path / "pred" / "labels").glob("*.png"))
    assert len(labels) == 2 and Image.open(labels[0]).size == (64, 48)


def test_maskrcnn_fp16_on_gpu_then_resumed_on_cpu(tmp_path):
    """Mask R-CNN trained with fp16 + GradScaler through the engine on the GPU, scored with COCO
    mask AP, then the same run resumed on the CPU from the GPU checkpoint."""
    run = tmp_path / "run"
    amp = "fp16" if HAS_CUDA else "null"
    segzoo("train", str(INSTANCE), "--work-dir", str(run), "--set", *TINY, "train.max_iters=4",
           "train.checkpoint_interval=2", f"train.device={DEVICE}", f"train.amp={amp}")
    assert f"on {DEVICE}" in (run / "train.log").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert "mask_AP" in metrics and "bbox_AP" in metrics

    from segzoo.checkpoint import load_checkpoint

    gpu_state = load_checkpoint(run / "checkpoints/last.pt")
    assert gpu_state["iteration"] == 4
    (run / "metrics.json").unlink()  # an unfinished run again: resume it on the CPU to 6
    segzoo("train", str(INSTANCE), "--work-dir", str(run), "--resume", "--set", *TINY,
           "train.max_iters=6", "train.checkpoint_interval=2", "train.device=cpu", "train.amp=null")
    log = (run / "train.log").read_text()
    assert "resumed from" in log and "on cpu" in log.split("resumed from")[-1]
    cpu_state = load_checkpoint(run / "checkpoints/last.pt")
    assert cpu_state["iteration"] == 6
    changed = [k for k, v in cpu_state["model"].items()
               if v.is_floating_point() and not torch.equal(v, gpu_state["model"][k])]
    assert len(changed) > len(cpu_state["model"]) // 4  # the CPU went on training the GPU's weights


def test_torchrun_ddp_nccl_one_process(tmp_path):
    """torchrun, one process: NCCL process group, SyncBatchNorm + DistributedDataParallel trained
    like the plain model; segzoo's collective helpers over NCCL. Then `segzoo train` under torchrun."""
    out = tmp_path / "ddp.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "1", str(REPO / "tests/cuda/cuda_ddp_child.py"), str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["backend"] == ("nccl" if HAS_CUDA else "gloo") and r["world_size"] == 1
    assert r["all_reduce"] == 1.0 and r["gathered"] == [{"rank": 0}]
    assert r["weight_diff"] <= 1e-5, r
    if HAS_CUDA:
        assert r["device"] == "cuda:0" and r["sync_bn"] > 0

    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "1", "-m", "segzoo", "train", str(SEMANTIC),
                           "--work-dir", str(run), "--set", *TINY, "train.max_iters=2",
                           f"train.device={DEVICE}", "train.sync_bn=true"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (run / "train.log").read_text()
    assert "x 1 process" in log and "sync_bn: world size 1" in log, log[-2000:]
