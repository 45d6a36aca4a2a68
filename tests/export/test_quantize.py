"""int8 post-training quantization (segzoo/export/quantize.py): a small FCN-8s (whose head calls one
ReLU twice, which the x86 quantizer's partitioning rejects unless split per call) quantized with
PT2E on built-in shapes images gives float32 logits of the same shape that agree with the float
model, at the calibration size and another one; int8 weights are what is saved; the .pt2 file
round-trips; instance models and foreign files are refused; the CLI writes a working file.
The compiled (oneDNN int8) path is measured in benchmarks/quantize_check.py, not here (minutes)."""

import argparse

import pytest
import torch
from helpers.version_marks import needs_dynamic_pooling

import segzoo
from segzoo.config import load_config
from segzoo.errors import ConfigError, ExportError

pytest.importorskip("torchao")

from conftest import CONFIGS  # noqa: E402

from segzoo.export.quantize import (  # noqa: E402
    FORMAT,
    Int8Model,
    calibration_images,
    classifier_convs,
    cpu_has_vnni,
    load_int8,
    min_input_size,
    quantize_int8,
    save_int8,
)
from segzoo.export.quantize_cli import add_parser  # noqa: E402

SHAPES = CONFIGS / "protocols" / "shapes-smoke" / "fcn32s_mobilenetv2.yaml"  # 64x64 shapes, 16 train images


def tiny_fcn8s() -> torch.nn.Module:
    torch.manual_seed(0)
    model = segzoo.build_model("fcn8s", num_classes=4, backbone="resnet18", fc_channels=8,
                               fc_kernel_size=1).eval()
    with torch.no_grad():  # trained-like BN statistics, so folding BN into the convs matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


@needs_dynamic_pooling
def test_int8_fcn8s_agrees_with_float32_and_round_trips(tmp_path):
    cfg = load_config(SHAPES)
    calib = calibration_images(cfg, 4)
    assert len(calib) == 4 and calib[0].shape == (1, 3, 64, 64) and calib[0].dtype == torch.float32
    assert calib[0].mean().abs() < 2 and calib[0].std() > 0.2  # normalised, not 0..255
    model = tiny_fcn8s()
    program = quantize_int8(model, calib, reduce_range=True)
    assert min_input_size(program) == 32  # the model's coarsest stride
    ranges = {n.args[4] for n in program.graph.nodes  # activations: uint8 in 0..127 (7 bits)
              if n.op == "call_function" and "quantize_per_tensor" in str(n.target)}
    assert ranges == {127}

    weights = {**program.state_dict, **program.constants}
    int8 = sum(v.numel() for v in weights.values() if v.dtype == torch.int8)
    fp32 = sum(v.numel() for v in weights.values() if v.dtype == torch.float32)
    conv = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert int8 >= 0.95 * conv  # every (but a negligible) conv weight stored as int8 ...
    assert fp32 < 0.05 * conv   # ... and no float32 copy of them left in the program

    quantized = Int8Model(program, compile=False)
    check = torch.cat(calibration_images(cfg, 6)[4:])  # two train images not calibrated on
    odd = check[:, :, 3:50, 1:62]  # another (odd) size, the same image statistics
    for x in (check, odd):
        with torch.no_grad():
            ref = model(x)
        out = quantized(x)
        assert out.shape == ref.shape == (x.shape[0], 4, *x.shape[-2:]) and out.dtype == torch.float32
        diff = (out - ref).abs()  # int8 rounding (random weights: small logit margins), not a broken graph
        assert diff.mean() <= 0.1 * ref.abs().mean() and diff.max() <= 0.3 * ref.abs().max()
        assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.95

    path = save_int8(program, tmp_path / "sub" / "model_int8.pt2", {"num_classes": 4, "min_input_size": 32})
    loaded, meta = load_int8(path)
    assert meta == {"num_classes": 4, "min_input_size": 32, "format": FORMAT}
    again = Int8Model(loaded, meta, compile=False)
    assert again.num_classes == 4 and again.min_input_size == 32 and not again.training
    assert torch.equal(again(check), quantized(check))
    with pytest.raises(ExportError, match="eval mode only"):
        again.train()


def test_refusals(tmp_path, stub_instance):
    with pytest.raises(ExportError, match="only semantic models"):
        quantize_int8(segzoo.build_model(stub_instance, num_classes=4), [torch.rand(1, 3, 32, 32)])
    with pytest.raises(ExportError, match="no calibration images"):
        quantize_int8(tiny_fcn8s(), [])
    with pytest.raises(ExportError, match=r"keep_float: \['decode_head.score'\] are not modules"):
        quantize_int8(tiny_fcn8s(), [torch.rand(1, 3, 32, 32)], keep_float=["decode_head.score"])
    with pytest.raises(ExportError, match="does not exist"):
        load_int8(tmp_path / "missing.pt2")
    foreign = tmp_path / "foreign.pt2"
    torch.export.save(torch.export.export(torch.nn.ReLU(), (torch.rand(2),)), foreign)
    with pytest.raises(ExportError, match="not a segzoo int8 model"):
        load_int8(foreign)
    cfg = load_config(SHAPES)
    with pytest.raises(ConfigError, match="only 16 images"):
        calibration_images(cfg, 17)
    with pytest.raises(ConfigError, match="at least 1"):
        calibration_images(cfg, 0)


@needs_dynamic_pooling
def test_quantize_command_writes_a_working_file(tiny_config, tiny_checkpoint, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "int8.pt2"
    args = parser.parse_args(["quantize", str(tiny_config), "--checkpoint", str(tiny_checkpoint),
                              "--calib", "2", "--float-classifiers", "--output", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "quantized fcn8s with 2 calibration images" in text and "argmax agreement" in text
    program, meta = load_int8(out)
    assert meta["model"] == "fcn8s" and meta["num_classes"] == 4 and len(meta["palette"]) == 4
    assert meta["calibration"] == {"images": 2, "sizes": [[32, 32]], "split": "train", "transforms": "val"}
    from segzoo.checkpoint import load_trained_model

    model, _ = load_trained_model(load_config(tiny_config), tiny_checkpoint)
    scores = classifier_convs(model)  # kept in float32 (--float-classifiers)
    assert scores == ["decode_head.score_fr", "decode_head.score_pool4", "decode_head.score_pool3"]
    assert meta["keep_float"] == scores and meta["reduce_range"] == (not cpu_has_vnni())
    weights = {**program.state_dict, **program.constants}
    convs = {n: m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert sum(v.numel() for v in weights.values() if v.dtype == torch.int8) == (
        sum(convs.values()) - sum(convs[n] for n in scores))
    logits = Int8Model(program, meta, compile=False)(torch.randn(1, 3, 32, 48))
    assert logits.shape == (1, 4, 32, 48)
