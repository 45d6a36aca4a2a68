"""`segzoo export`: ONNX graphs that onnxruntime runs to PyTorch's logits (skipped without the
optional onnx packages); the errors without them."""

import numpy as np
import pytest
import torch
from helpers.version_marks import needs_dynamic_pooling

from segzoo.checkpoint import load_trained_model
from segzoo.cli import main
from segzoo.config import load_config
from segzoo.errors import ExportError
from segzoo.export.onnx import export_onnx


@needs_dynamic_pooling
def test_export_cli_output_matches_pytorch_in_onnxruntime(tiny_config, tiny_checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from segzoo.export import onnxruntime_logits

    out = tmp_path / "model.onnx"
    assert main(["export", str(tiny_config), "--checkpoint", str(tiny_checkpoint), "--output", str(out),
                 "--size", "48", "64"]) == 0
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out
    model, _ = load_trained_model(load_config(tiny_config), tiny_checkpoint)
    x = torch.randn(3, 3, 48, 64, generator=torch.Generator().manual_seed(5))  # another batch size
    got = onnxruntime_logits(out, x.numpy())
    with torch.no_grad():
        ref = model(x).numpy()
    assert got.shape == (3, 4, 48, 64)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.999


def test_export_refuses_instance_models_and_needs_a_size(tiny_config, tiny_checkpoint, tmp_path, capsys):
    class Det(torch.nn.Module):
        task = "instance"

    with pytest.raises(ExportError, match="only semantic models"):
        export_onnx(Det(), tmp_path / "x.onnx", (32, 32))
    # the tiny config has no val resize and no train crop: the size must be given
    assert main(["export", str(tiny_config), "--checkpoint", str(tiny_checkpoint), "--output",
                 str(tmp_path / "m.onnx")]) == 2
    assert "pass --size H W" in capsys.readouterr().err


@needs_dynamic_pooling
def test_export_verifies_at_other_sizes_and_fails_with_the_largest_difference(tiny_config, tiny_checkpoint,
                                                                            tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "model.onnx"
    args = ["export", str(tiny_config), "--checkpoint", str(tiny_checkpoint), "--output", str(out),
            "--size", "32", "32", "--verify-size", "33", "47", "--verify-size", "64", "40",
            "--verify-size", "71", "71"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "at 33x47 (max |diff|" in text and "71x71" in text and "H, W >= 32" in text
    # an impossible tolerance: the failure names the largest difference and its size
    assert main([*args, "--atol", "-1"]) == 2
    err = capsys.readouterr().err
    assert "differ from PyTorch by up to" in err and "(> -1.0) at" in err and "33x47:" in err


PARITY_GUARD = ("Not all values of height = L['images'].size()[2] in the specified range 8 <= height <= 16384 "
                "satisfy the generated guard (((-2) + L['images'].size()[2]) % 2) == 0.")


@pytest.mark.parametrize("version, hinted", [("2.11.0+cu130", True), ("2.12.1", True), ("2.13.0", False),
                                             ("2.14.1+cu130", False)])
def test_parity_guard_on_torch_before_2_13_says_to_upgrade(monkeypatch, version, hinted):
    """torch 2.11/2.12 freeze the parity of H and W in max pooling's shape inference (every ResNet,
    VGG and U-Net export failed there); the error then says which torch exports dynamically."""
    from segzoo.export import onnx as onnx_export

    monkeypatch.setattr(torch, "__version__", version)
    hint = onnx_export._old_torch_hint(PARITY_GUARD)
    assert ("pip install 'torch>=2.13'" in hint and version in hint) == hinted
    assert (hint == "") == (not hinted)
    assert onnx_export._old_torch_hint("Not all values ... satisfy the generated guard Ne(s0, 1)") == ""


def test_a_frozen_size_is_an_export_error_naming_the_guard(tmp_path):
    """A model that branches on the input size cannot give one graph for every size."""
    pytest.importorskip("onnxscript")
    from segzoo.export.onnx import export_program

    class Branchy(torch.nn.Module):
        def forward(self, x):
            return x * 2 if x.shape[-1] > 20 else x

    with pytest.raises(ExportError, match=r"torch.export cannot trace Branchy with dynamic batch, height and "
                                          r"width: Not all values of width .* satisfy the generated guard 21 <= "):
        export_program(Branchy(), tmp_path / "b.onnx", (16, 24))
