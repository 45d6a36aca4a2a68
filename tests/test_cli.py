"""The README's commands, end to end on tiny data."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from segzoo.cli import main


def listed(out: str) -> set[str]:
    """The names ``segzoo list`` printed: the first word of each indented line."""
    return {line.split()[0] for line in out.splitlines() if line.startswith("  ") and line.strip()}


def test_list(capsys):
    assert main(["list"]) == 0
    names = listed(capsys.readouterr().out)
    # exact names: "fcn" and "unet" must not pass as parts of "fcn8s" or "unet_encoder"
    for name in ("fcn8s", "fcn16s", "fcn32s", "vgg16", "vgg16_bn", "shapes", "camvid", "folder",
                 "fcn", "unet", "deeplabv2", "deeplabv3", "deeplabv3plus", "pspnet", "resnet18",
                 "resnet34", "resnet50", "resnet101", "mobilenet_v2", "xception65", "unet_encoder",
                 "timm:<name>", "tu-<name>", "encoder_decoder", "maskrcnn"):
        assert name in names, name
    assert main(["list", "transforms"]) == 0
    assert "random_crop" in listed(capsys.readouterr().out)


def test_list_heads_shows_what_each_head_reads_and_fits(capsys):
    assert main(["list", "heads"]) == 0
    out = capsys.readouterr().out
    heads = {line.split(":")[0] for line in out.splitlines() if line and not line.startswith(" ")}
    assert {"fcn_head", "fcn_skip_head", "aspp_head", "aspp_v2_head", "deeplabv3plus_head",
            "psp_head", "unet_head"} <= heads
    block = out[out.index("unet_head"):].splitlines()[1:]
    block = block[:next((i for i, x in enumerate(block) if not x.startswith(" ")), len(block))]
    backbones = next(x for x in block if x.strip().startswith("backbones")).split(None, 1)[1]
    assert {"resnet18", "mobilenet_v2", "vgg16_bn"} <= set(backbones.split(", "))


def test_train_eval_predict_end_to_end(tiny_config, tmp_path, capsys):
    wd = tmp_path / "run"
    assert main(["train", str(tiny_config), "--work-dir", str(wd), "--set", "train.max_iters=2",
                 "train.log_interval=1"]) == 0
    out = capsys.readouterr()
    assert f"Run folder: {wd}" in out.out + out.err
    ckpt = wd / "checkpoints" / "last.pt"

    assert main(["eval", str(tiny_config), "--checkpoint", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "triangle" in out
    report = json.loads((wd / "eval_last.json").read_text())
    assert report["num_images"] == 4 and 0 <= report["mIoU"] <= 1

    images = tmp_path / "images"
    images.mkdir()
    for i, size in enumerate([(40, 56), (33, 70)]):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (*size, 3), dtype=np.uint8)).save(
            images / f"img{i}.png")
    out_dir = tmp_path / "pred"
    assert main(["predict", str(tiny_config), "--checkpoint", str(ckpt), "--input", str(images),
                 "--output", str(out_dir)]) == 0
    label = Image.open(out_dir / "labels" / "img1.png")
    assert label.mode == "P" and label.size == (70, 33)  # the image's own size
    assert np.asarray(label).max() < 4
    assert Image.open(out_dir / "overlays" / "img0.png").size == (56, 40)


def test_errors_are_reported_without_traceback(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config), "--set", "train.max_iter=3"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'train.max_iters'" in err and "Traceback" not in err
    assert main(["eval", str(tiny_config), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_script_and_module_entry_points():
    exe = Path(sys.executable).with_name("segzoo")
    for cmd in ([str(exe), "list", "models"], [sys.executable, "-m", "segzoo", "list", "models"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "fcn8s" in proc.stdout


@pytest.mark.shared_data
def test_camvid_config_trains_and_evaluates_on_real_data(shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEGZOO_DATA", str(shared_data))
    config = REPO / "configs" / "fcn" / "fcn8s_vgg16_camvid-480x360.yaml"
    small = ["model.backbone=vgg16_bn", "model.fc_channels=16", "data.num_workers=0",
             "data.train.dataset.max_images=4", "data.val.dataset.max_images=2",
             "data.train.batch_size=2", "data.train.transforms=[{name: random_crop, size: [64, 96]}]",
             "data.val.transforms=[{name: resize, size: [72, 96]}]", "train.max_iters=2", "train.num_vis=1"]
    wd = tmp_path / "camvid"
    assert main(["train", str(config), "--work-dir", str(wd), "--set", *small]) == 0
    assert main(["eval", str(config), "--checkpoint", str(wd / "checkpoints" / "last.pt"), "--set", *small]) == 0
    out = capsys.readouterr().out
    for name in ("sky", "building", "bicyclist", "mIoU"):
        assert name in out


def test_makefile_demo_config_exists():
    makefile = (REPO / "Makefile").read_text()
    demo = next(line.split(":=")[1].strip() for line in makefile.splitlines() if line.startswith("DEMO_CONFIG"))
    assert (REPO / demo).is_file()
