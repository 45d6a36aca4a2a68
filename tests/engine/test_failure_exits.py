"""Every error path of ``segzoo train`` exits promptly with its exit code while dataloader workers
are alive (0, 1 and 2 real worker processes), and no training is lost to an evaluation failure.

Each case runs ``segzoo train`` in a child process with a timeout: a hang fails the test instead
of hanging the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.children import CHILD
from helpers.tiny_model import write_tiny_config
from PIL import Image

from segzoo.checkpoint import load_checkpoint

TIMEOUT = 90  # seconds; a run here takes a few seconds, a hang never ends


def make_folder(root: Path, n: int, *, corrupt: int | None = None) -> Path:
    """``root/images/<i>.png`` (32x32 RGB) and ``root/labels/<i>.png`` (classes 0/1); image
    ``corrupt`` is replaced by bytes that are no image."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        label = np.zeros((32, 32), np.uint8)
        label[8:24, 8:24] = 1
        image = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8) + 150 * label[..., None]
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        Image.fromarray(label).save(root / "labels" / f"{i}.png")
    if corrupt is not None:
        (root / "images" / f"{corrupt}.png").write_bytes(b"this is not a PNG file")
    return root


def folder_split(root: Path) -> str:
    return (f"{{_delete_: true, name: folder, root: {root}, class_names: [bg, square], img_dir: images, "
            f"ann_dir: labels}}")


def config(tmp: Path, *, workers: int, train_root: Path, val_root: Path, extra: str = "") -> Path:
    return write_tiny_config(tmp / "cfg", extra=f"""
model: {{num_classes: 2}}
data:
  num_workers: {workers}
  train: {{dataset: {folder_split(train_root)}, transforms: [], batch_size: 2}}
  val: {{dataset: {folder_split(val_root)}, batch_size: 1}}
train: {{max_iters: 4, eval_interval: 0, checkpoint_interval: 0, num_vis: 0}}
{extra}""")


def run_train(cfg: Path, work_dir: Path) -> tuple[int, str]:
    """``segzoo train`` in its own process group; on a hang, the whole group (dataloader workers
    included) is killed and the test fails."""
    proc = subprocess.Popen([sys.executable, str(CHILD), "train", str(cfg), "--work-dir", str(work_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"segzoo train did not exit within {TIMEOUT} s (hang):\n{out[-3000:]}")
    return proc.returncode, out


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_corrupt_training_image_exits_with_error(tmp_path, workers):
    train = make_folder(tmp_path / "train", 6, corrupt=3)
    val = make_folder(tmp_path / "val", 2)
    code, out = run_train(config(tmp_path, workers=workers, train_root=train, val_root=val),
                          tmp_path / "run")
    assert code == 2, out
    assert "3.png" in out and "segzoo train: error:" in out


@pytest.mark.parametrize("workers", [0, 2])
def test_evaluation_failure_keeps_the_trained_checkpoint(tmp_path, workers):
    train = make_folder(tmp_path / "train", 6)
    val = make_folder(tmp_path / "val", 3, corrupt=1)
    cfg = config(tmp_path, workers=workers, train_root=train, val_root=val)
    run = tmp_path / "run"
    code, out = run_train(cfg, run)
    assert code == 2, out
    # the training of the interval is on disk although its evaluation failed
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 4
    log = (run / "train.log").read_text()
    assert "evaluation at iteration 4 failed" in log and "1.png" in log
    assert "segzoo eval" in out and str(run / "checkpoints" / "last.pt") in out
    assert not (run / "metrics.json").exists()
    # once the data is fixed, the same command evaluates the saved state and finishes the run
    make_folder(val, 3)
    code, out = run_train(cfg, run)
    assert code == 0, out
    assert (run / "metrics.json").exists()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 4


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_non_finite_loss_exits_and_says_which_checkpoint_exists(tmp_path, workers):
    train = make_folder(tmp_path / "train", 6)
    val = make_folder(tmp_path / "val", 2)
    cfg = config(tmp_path, workers=workers, train_root=train, val_root=val,
                 extra="optimizer: {lr: 1.0e+30, momentum: 0.0}\n")
    code, out = run_train(cfg, tmp_path / "run")
    assert code == 2, out
    assert "non-finite loss" in out
    assert "no checkpoint has been written" in out
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
