"""Shared fixtures. Real datasets are reached only through :func:`shared_data`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from segzoo.data.paths import data_root

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
DEMO_CONFIG = CONFIGS / "fcn" / "fcn8s_vgg16-bn_shapes-64x64.yaml"

# 2 threads on the CI's 2 cores; SEGZOO_TEST_THREADS=1 is much faster on a busy shared machine
torch.set_num_threads(int(os.environ.get("SEGZOO_TEST_THREADS", "2")))
torch.set_flush_denormal(True)


@pytest.fixture
def shared_data() -> Path:
    """The shared real-data folder ($SEGZOO_DATA or ../shared/data); skips the test if absent."""
    root = data_root()
    if root is None or not root.is_dir():
        pytest.skip("shared data folder not found (set SEGZOO_DATA)")
    return root


TINY_OVERRIDES = """
_base_: {base}
model:
  fc_channels: 16
  fc_kernel_size: 1
data:
  train:
    dataset: {{num_images: 8, size: [32, 32]}}
    batch_size: 4
  val:
    dataset: {{num_images: 4, size: [32, 32]}}
    batch_size: 2
train:
  max_iters: 4
  log_interval: 2
  checkpoint_interval: 2
  num_vis: 2
"""


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A config inheriting the demo config, shrunk to 32x32 images and 4 iterations."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_OVERRIDES.format(base=DEMO_CONFIG))
    return path
