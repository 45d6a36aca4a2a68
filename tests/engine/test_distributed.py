"""DDP on CPU: `torchrun --nproc_per_node 2` with the gloo backend trains and scores like one
process with the same global batch on the same data."""

import json
import sys

import torch
from helpers.children import CHILD, child_env, finish, tensors
from helpers.tiny_model import write_tiny_config

from segzoo import builders
from segzoo.checkpoint import load_checkpoint, load_trained_model
from segzoo.config import load_config
from segzoo.evaluation import evaluate

# no BatchNorm (per-process batch statistics differ from one process's by design) and no dropout
# (each rank has its own dropout stream), so one process and two are the same computation;
# evaluation at every iteration, with a small lr, scores models that still predict several classes
DDP_CONFIG = """
model: {norm: gn, dropout: 0.0}
optimizer: {lr: 0.01}
data:
  train: {dataset: {num_images: 12}}
  val: {dataset: {num_images: 5}}   # odd: shards of 3 and 2, nothing padded or counted twice
train:
  max_iters: 6
  log_interval: 1
  eval_interval: 1
  checkpoint_interval: 3
  ema: {decay: 0.8}
"""


def test_torchrun_two_processes_match_one_process(tmp_path):
    import subprocess

    config = write_tiny_config(tmp_path / "cfg", extra=DDP_CONFIG)
    ddp_dir, one_dir = tmp_path / "ddp", tmp_path / "one"
    ddp = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(CHILD),
         "train", str(config), "--work-dir", str(ddp_dir), "--set", "data.train.batch_size=2"],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    one = subprocess.Popen(
        [sys.executable, str(CHILD), "train", str(config), "--work-dir", str(one_dir),
         "--set", "data.train.batch_size=4"],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    code, out = finish(ddp)
    assert code == 0, out
    code, out = finish(one)
    assert code == 0, out

    log = (ddp_dir / "train.log").read_text()
    assert "on cpu x 2 process(es)" in log and "batch 2 x 2 x 1" in log
    assert log.count("iter 1/6 ") == 1  # only rank 0 writes
    assert len(list((ddp_dir / "tb").glob("events.out.tfevents.*"))) == 1

    # same training: weights, EMA and optimizer state agree to float rounding
    a, b = load_checkpoint(ddp_dir / "checkpoints/last.pt"), load_checkpoint(one_dir / "checkpoints/last.pt")
    assert a["samples_seen"] == b["samples_seen"] == 6 * 4
    ta, tb = tensors({k: a[k] for k in ("model", "ema")}), tensors({k: b[k] for k in ("model", "ema")})
    diff = max((ta[k] - tb[k]).abs().max().item() for k in ta)
    assert diff < 1e-5, diff
    rows = {d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (ddp_dir, one_dir)}
    ddp_loss = [r["loss"] for r in rows[ddp_dir] if r["mode"] == "train"]
    one_loss = [r["loss"] for r in rows[one_dir] if r["mode"] == "train"]
    assert len(ddp_loss) == 6 and max(abs(x - y) for x, y in zip(ddp_loss, one_loss)) < 1e-5  # global means

    # same metrics at every evaluation: every val image counted once, per-class IoU equal
    ddp_val = [r for r in rows[ddp_dir] if r["mode"] == "val"]
    one_val = [r for r in rows[one_dir] if r["mode"] == "val"]
    assert len(ddp_val) == len(one_val) == 6
    for x, y in zip(ddp_val, one_val):
        assert x["num_images"] == y["num_images"] == 5
        assert x["IoU"] == y["IoU"] and x["acc"] == y["acc"], (x["iter"], x["IoU"], y["IoU"])
        assert sum(1 for v in x["IoU"].values() if v) >= 2  # not a model predicting one class

    m_ddp = json.loads((ddp_dir / "metrics.json").read_text())
    m_one = json.loads((one_dir / "metrics.json").read_text())
    assert m_ddp["num_images"] == m_one["num_images"] == 5
    for key in ("mIoU", "pixel_acc", "mean_acc"):
        assert abs(m_ddp[key] - m_one[key]) <= 1e-6, key
    assert m_ddp["IoU"] == m_one["IoU"]

    # the sharded, all-reduced evaluation equals one process scoring the same checkpoint
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(config)
        model, _ = load_trained_model(cfg, ddp_dir / "checkpoints/last.pt")
        val = builders.dataset_from_split(cfg, cfg.data.val)
        single = evaluate(model, builders.build_dataloader(val, batch_size=2, shuffle=False),
                                   num_classes=4, ignore_index=255, class_names=val.class_names, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert single["num_images"] == 5
    assert single["mIoU"] == m_ddp["mIoU"] and single["pixel_acc"] == m_ddp["pixel_acc"]
