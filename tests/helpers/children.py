"""Training in a child process (``train_child.py``): the environment, starting, waiting, and
the tensors of a checkpoint for exact comparisons."""

import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHILD = HERE / "train_child.py"


def child_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def start(config, work_dir, *args, signal_at=None):
    """Start `segzoo train` in a child process (tiny model registered, one thread)."""
    env = child_env(**({"SEGZOO_TEST_SIGNAL_AT": signal_at} if signal_at else {}))
    cmd = [sys.executable, str(CHILD), "train", str(config), "--work-dir", str(work_dir), *args]
    # a session of its own: a signal sent to the child's process group does not reach pytest
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(proc, timeout=240):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def tensors(state, prefix=""):
    """Every tensor of a (nested) checkpoint dict, by dotted key."""
    out = {}
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, list) else []
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            out[key] = v
        elif isinstance(v, (dict, list)):
            out.update(tensors(v, key + "."))
    return out
