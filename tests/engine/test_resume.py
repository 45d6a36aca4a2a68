"""Nothing lost: a training process killed with SIGKILL, or stopped with SIGINT, resumes and ends
exactly where an uninterrupted run with the same seed ends (weights, EMA, optimizer, metrics)."""

import json
import signal

import pytest
from helpers import children
from helpers.children import finish, start, tensors
from helpers.tiny_model import write_tiny_config

from segzoo.checkpoint import load_checkpoint

CHILD, REPO = children.CHILD, children.REPO

# every stateful feature at once: EMA, accumulation, clipping, AdamW with groups, warmup+cosine,
# BatchNorm, dropout, random flips, dataloader workers; checkpoints at 3, 5 (eval), 6, 9, 10
RESUME_CONFIG = """
data:
  num_workers: 2
optimizer: {_delete_: true, name: adamw, lr: 0.01, backbone_lr_mult: 0.5}
scheduler: {_delete_: true, name: cosine, warmup_iters: 3}
train:
  max_iters: 10
  log_interval: 1
  eval_interval: 5
  checkpoint_interval: 3
  grad_accum_steps: 2
  clip_grad_norm: 1.0
  ema: {decay: 0.9}
  deterministic: true
  keep_last: 2
"""


def max_diff(a_path, b_path):
    a, b = load_checkpoint(a_path), load_checkpoint(b_path)
    ta = tensors({k: a[k] for k in ("model", "ema", "optimizer")})
    tb = tensors({k: b[k] for k in ("model", "ema", "optimizer")})
    assert ta.keys() == tb.keys()
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 10
    assert a["samples_seen"] == b["samples_seen"]
    return max((ta[k].double() - tb[k].double()).abs().max().item() for k in ta)


def losses_by_iter(work_dir):
    rows = [json.loads(x) for x in (work_dir / "metrics.jsonl").read_text().splitlines()]
    train = [(r["iter"], r["loss_out"], r["loss_aux"]) for r in rows if r["mode"] == "train"]
    val = [(r["iter"], r["mIoU"], r["pixel_acc"]) for r in rows if r["mode"] == "val"]
    return train, val


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs of the same config started together: uninterrupted, SIGKILLed, SIGINTed."""
    root = tmp_path_factory.mktemp("resume")
    config = write_tiny_config(root / "cfg", extra=RESUME_CONFIG)
    procs = {
        "reference": start(config, root / "reference"),
        # the 15th training forward is in iteration 8; the last checkpoint before it is iteration 6
        "killed": start(config, root / "killed", signal_at="15:SIGKILL"),
        # the 9th is in iteration 5: Ctrl-C there (SIGINT to the process group, dataloader workers
        # included, as a terminal sends it) finishes iteration 5 (with its evaluation)
        "interrupted": start(config, root / "interrupted", signal_at="9:SIGINT:group"),
    }
    results = {name: finish(p) for name, p in procs.items()}
    return root, config, results


def test_sigkill_mid_training_then_resume_ends_exactly_like_an_uninterrupted_run(runs):
    root, config, results = runs
    code, out = results["reference"]
    assert code == 0, out
    code, out = results["killed"]
    assert code == -signal.SIGKILL, out
    killed = root / "killed"
    assert load_checkpoint(killed / "checkpoints/last.pt")["iteration"] == 6
    assert not (killed / "metrics.json").exists()
    logged = [json.loads(x)["iter"] for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert 7 in logged  # the killed run logged past its last checkpoint

    code, out = finish(start(config, killed, "--resume"))
    assert code == 0, out
    assert "resumed from" in (killed / "train.log").read_text()
    diff = max_diff(root / "reference/checkpoints/last.pt", killed / "checkpoints/last.pt")
    assert diff <= 1e-6, diff
    ref_metrics = json.loads((root / "reference/metrics.json").read_text())
    assert json.loads((killed / "metrics.json").read_text()) == ref_metrics
    # the log has each iteration once, with the same losses as the uninterrupted run
    assert losses_by_iter(killed) == losses_by_iter(root / "reference")
    snaps = sorted(p.name for p in (killed / "checkpoints").glob("iter_*.pt"))
    assert snaps == ["iter_000009.pt", "iter_000010.pt"]


def test_sigint_saves_a_checkpoint_and_the_run_resumes_exactly(runs):
    root, config, results = runs
    code, out = results["interrupted"]
    assert code == 130, out
    wd = root / "interrupted"
    assert load_checkpoint(wd / "checkpoints/last.pt")["iteration"] == 5
    assert "SIGINT at iteration 5" in (wd / "train.log").read_text()
    assert not (wd / "metrics.json").exists()

    code, out = finish(start(config, wd))  # no --resume: an unfinished run folder resumes itself
    assert code == 0, out
    diff = max_diff(root / "reference/checkpoints/last.pt", wd / "checkpoints/last.pt")
    assert diff <= 1e-6, diff
    assert json.loads((wd / "metrics.json").read_text()) == json.loads((root / "reference/metrics.json").read_text())
