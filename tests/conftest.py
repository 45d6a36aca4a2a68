"""Shared fixtures. Real datasets are reached only through :func:`shared_data`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from segzoo.paths import data_root

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
DEMO_CONFIG = CONFIGS / "fcn" / "fcn8s_vgg16-bn_shapes-64x64.yaml"

# 2 threads on the CI's 2 cores, 1 per worker under pytest-xdist (`make test` runs 2 workers);
# SEGZOO_TEST_THREADS=1 is much faster on a busy shared machine
_DEFAULT_THREADS = "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2"
torch.set_num_threads(int(os.environ.get("SEGZOO_TEST_THREADS", _DEFAULT_THREADS)))
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


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """An untrained checkpoint of the tiny config's model (fcn8s, vgg16_bn, fc 16 wide, 1x1
    kernel, 4 classes) at ``tmp_path/run/checkpoints/last.pt``; no training needed."""
    from segzoo.checkpoint import save_checkpoint
    from segzoo.models import fcn8s

    torch.manual_seed(0)
    model = fcn8s(num_classes=4, backbone="vgg16_bn", fc_channels=16, fc_kernel_size=1)
    return save_checkpoint({"model": model.state_dict()}, tmp_path / "run" / "checkpoints" / "last.pt")


class StubInstanceModel(torch.nn.Module):
    """Test-only instance model with torchvision's eval contract (``model(list of images)`` ->
    ``[{"boxes", "labels", "scores", "masks" (N, 1, H, W)}]``): per image one confident detection of
    label 2 over the centre quarter and a weak one (score 0.2) of label 1 over everything."""

    task = "instance"

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.num_classes = num_classes
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, images):
        out = []
        for img in images:
            h, w = img.shape[-2:]
            masks = torch.zeros(2, 1, h, w)
            masks[0, 0, h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1.0
            masks[1] = 1.0
            out.append({"boxes": torch.tensor([[w / 4, h / 4, 3 * w / 4, 3 * h / 4], [0, 0, w, h]]),
                        "labels": torch.tensor([2, 1]), "scores": torch.tensor([0.9, 0.2]) * self.scale,
                        "masks": masks})
        return out


@pytest.fixture
def stub_instance(monkeypatch):
    """Registers :class:`StubInstanceModel` as model ``stub_instance`` for one test only."""
    from segzoo.registry import MODELS, Entry

    def build(*, num_classes: int = 4) -> torch.nn.Module:
        return StubInstanceModel(num_classes)

    monkeypatch.setitem(MODELS._entries, "stub_instance", Entry("stub_instance", build, {"task": "instance", "test_only": True}))
    return "stub_instance"
