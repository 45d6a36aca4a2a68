"""Evaluating at another output stride than trained (DeepLab v3: train at 16, test at
8): the same weights load, only dilations change; any other model change is still refused, and
resuming training at another stride is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from segzoo.checkpoint import load_trained_model
from segzoo.cli import main
from segzoo.config import load_config
from segzoo.engine import Trainer
from segzoo.errors import CheckpointError

BASE = Path(__file__).resolve().parents[2] / "configs" / "_base_" / "protocols"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("os16")
    cfg = root / "dlv3.yaml"
    cfg.write_text(
        f"_base_: [{BASE / 'shapes-smoke.yaml'}, {BASE / 'models' / 'deeplabv3_mobilenetv2.yaml'}]\n"
        "model: {weights_backbone: null, channels: 16}\n"
        "train: {max_iters: 2, eval_interval: 0, num_vis: 0}\n")
    Trainer(load_config(cfg), root / "run", progress=False).train()
    return root / "run"


def test_eval_at_output_stride_8_uses_the_same_weights_with_other_dilations(run, tmp_path, capsys):
    cfg, ckpt = run / "config.yaml", run / "checkpoints" / "last.pt"
    m16, meta16 = load_trained_model(load_config(cfg), ckpt)
    m8, meta8 = load_trained_model(load_config(cfg, ["model.output_stride=8"]), ckpt)
    assert meta16["inference_changes"] == []
    assert meta8["inference_changes"] == ["model.output_stride: 16 -> 8"]
    for (k, a), (_, b) in zip(m16.state_dict().items(), m8.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    dil16 = sorted({m.dilation[0] for m in m16.modules() if isinstance(m, torch.nn.Conv2d)})
    dil8 = sorted({m.dilation[0] for m in m8.modules() if isinstance(m, torch.nn.Conv2d)})
    assert dil16 == [1, 2, 6, 12, 18]  # backbone's last stage dilated by 2, ASPP 6/12/18
    assert dil8 == [1, 2, 4, 12, 24, 36]  # two stages dilated (2, 4), ASPP rates doubled
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y16, y8 = m16(x), m8(x)
    y16, y8 = (y["out"] if isinstance(y, dict) else y for y in (y16, y8))
    assert y16.shape == y8.shape == (1, 4, 64, 64) and not torch.allclose(y16, y8)

    out = tmp_path / "os8.json"
    assert main(["eval", str(cfg), "--checkpoint", str(ckpt), "--set", "model.output_stride=8",
                 "--out", str(out)]) == 0
    assert "evaluated with model.output_stride: 16 -> 8 (trained otherwise)" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["inference_changes"] == ["model.output_stride: 16 -> 8"] and 0 <= res["mIoU"] <= 1


def test_other_model_changes_and_resuming_at_another_stride_are_still_refused(run, tmp_path, capsys):
    cfg, ckpt = run / "config.yaml", run / "checkpoints" / "last.pt"
    with pytest.raises(CheckpointError, match=r"model.channels: 16 -> 32"):
        load_trained_model(load_config(cfg, ["model.output_stride=8", "model.channels=32"]), ckpt)
    assert main(["eval", str(cfg), "--checkpoint", str(ckpt), "--set", "model.channels=32"]) == 2
    assert "trained as another model" in capsys.readouterr().err
    unfinished = shutil.copytree(run, tmp_path / "unfinished")
    (unfinished / "metrics.json").unlink()
    resumed = load_config(cfg, ["model.output_stride=8", "train.max_iters=3"])
    with pytest.raises(CheckpointError, match=r"model.output_stride: 16 -> 8"):
        Trainer(resumed, unfinished, progress=False)
