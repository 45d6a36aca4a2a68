"""Every registered semantic model exports to ONNX with dynamic batch, height and width, and
onnxruntime gives PyTorch's logits (|diff| <= 1e-4) at three sizes other than the export size, odd
ones included (small widths and sizes to stay fast). The ONNX graph optimizer is skipped here (half
the conversion time); tests/export/test_export.py and benchmarks/export_check.py run it."""

import pytest
import torch
from helpers.version_marks import needs_dynamic_pooling

import segzoo
from segzoo.registry import MODELS

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

# one small configuration per registered semantic model (+ U-Net's valid padding)
CASES = [
    ("fcn32s", {"backbone": "resnet18", "fc_channels": 8, "fc_kernel_size": 1}),
    ("fcn16s", {"backbone": "resnet18", "fc_channels": 8, "fc_kernel_size": 3}),
    ("fcn8s", {"backbone": "resnet18", "fc_channels": 8, "fc_kernel_size": 1}),
    ("fcn", {"backbone": "resnet18", "channels": 8}),
    ("unet", {"base_channels": 4, "depth": 3}),
    ("unet", {"base_channels": 4, "depth": 3, "padding": "valid", "norm": "bn"}),
    ("deeplabv2", {"backbone": "resnet18", "branch_channels": 8}),
    ("deeplabv3", {"backbone": "resnet18", "channels": 8}),
    ("deeplabv3plus", {"backbone": "resnet18", "channels": 8, "low_level_channels": 4}),
    ("pspnet", {"backbone": "resnet18", "channels": 8, "ppm_channels": 4}),
    ("encoder_decoder", {"backbone": "resnet18", "auxiliary_head": None,
                         "decode_head": {"name": "psp_head", "channels": 8, "ppm_channels": 4}}),
]
SIZES = [(33, 47), (64, 40), (71, 71)]  # the export size is 48x64


def test_cases_cover_every_registered_semantic_model():
    assert {name for name, _ in CASES} == set(MODELS.names(task="semantic", test_only=None))


@needs_dynamic_pooling
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_export_dynamic_size_matches_pytorch_in_onnxruntime(name, kwargs, tmp_path):
    from segzoo.export import export_onnx

    torch.manual_seed(0)
    model = segzoo.build_model(name, num_classes=3, **kwargs).eval()
    with torch.no_grad():  # non-trivial BN statistics, so normalisation is exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    result = export_onnx(model, tmp_path / "m.onnx", (48, 64), sizes=SIZES, optimize=False)
    assert result["sizes"] == SIZES and len(result["diffs"]) == 3
    assert max(result["diffs"]) <= 1e-4
