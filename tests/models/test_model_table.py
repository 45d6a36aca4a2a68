"""benchmarks/model_table.py: the FLOP convention and the table on a tiny model."""

import importlib.util
import sys

from conftest import REPO
from torch import nn


def load_script():
    spec = importlib.util.spec_from_file_location("model_table", REPO / "benchmarks" / "model_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["model_table"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_flops_are_twice_the_multiply_adds():
    mt = load_script()
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1))
    params, flops = mt.measure(conv, size=16)
    assert params == 3 * 8 * 9 + 8
    assert flops == 2 * (3 * 8 * 9) * 16 * 16  # 2 x MACs; the bias add is not counted


def test_table_for_one_tiny_model_and_the_script_entry(tmp_path):
    mt = load_script()
    row = mt.Row("unet", "unet_encoder", {"base_channels": 4, "depth": 2}, "tiny", size=32)
    model = mt.build(row, num_classes=2)
    assert next(model.parameters()).device.type == "meta"  # nothing allocated, nothing computed
    text = mt.table([row], num_classes=2)
    real = sum(p.numel() for p in segzoo_unet_tiny().parameters())
    assert f"| `unet` | `unet_encoder` | base_channels=4, depth=2 | {real / 1e6:.1f} |" in text
    out = tmp_path / "zoo.md"
    assert mt.main(["--output", str(out), "--only", "unet"]) == 0
    doc = out.read_text()
    assert "FlopCounterMode" in doc and doc.count("| `unet` |") == 4


def segzoo_unet_tiny():
    import segzoo

    return segzoo.build_model("unet", num_classes=2, base_channels=4, depth=2)
