"""`segzoo data check`: counts, sizes, class frequencies and every bad-data message, identical to
the messages that stop loading (and so training)."""

import json

import numpy as np
import pytest
from conftest import CONFIGS
from PIL import Image

from segzoo.cli import main
from segzoo.data import FolderDataset, problems
from segzoo.errors import DataError

CLASSES = ["bg", "a", "b"]


def write_folder(root):
    """A folder dataset with one good pair and one pair per kind of problem."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rgb = np.zeros((8, 10, 3), np.uint8)
    good = np.zeros((8, 10), np.uint8)
    good[:4] = 1
    good[0, 0] = 255  # ignored: fine
    for name in ("good", "wrongsize", "badvalues", "badimage", "badlabel", "colourlabel", "nolabel"):
        Image.fromarray(rgb).save(root / "images" / f"{name}.png")
        Image.fromarray(good).save(root / "labels" / f"{name}.png")
    Image.fromarray(np.zeros((6, 10), np.uint8)).save(root / "labels" / "wrongsize.png")
    bad = good.copy()
    bad[5, 5:8] = [3, 7, 7]
    Image.fromarray(bad).save(root / "labels" / "badvalues.png")
    (root / "images" / "badimage.png").write_bytes(b"\x89PNG broken")
    (root / "labels" / "badlabel.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(root / "labels" / "colourlabel.png")
    (root / "labels" / "nolabel.png").unlink()
    return root


def folder_config(tmp_path, root):
    cfg = tmp_path / "folder.yaml"
    cfg.write_text(
        f"_base_: {CONFIGS / '_base_/default_runtime.yaml'}\n"
        "model: {name: fcn8s, backbone: vgg16_bn, fc_channels: 16, fc_kernel_size: 1}\n"
        "data:\n"
        f"  train: {{dataset: {{name: folder, root: {root}, class_names: {CLASSES}}}, batch_size: 2,\n"
        "          transforms: [{name: resize, size: [32, 32]}]}\n"
        "  num_workers: 0\n"
        "train: {max_iters: 1, device: cpu, num_vis: 0}\n")
    return cfg


def test_data_check_reports_counts_frequencies_and_every_problem(tmp_path, capsys):
    root = write_folder(tmp_path / "data")
    cfg = folder_config(tmp_path, root)
    assert main(["data", "check", str(cfg), "--out", str(tmp_path / "report.json")]) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert "images 7, labels 6 (1 images without a label); 3 of 6 samples read" in out
    assert "sizes (H x W): 8x10 (3)" in out
    assert "6 problem(s):" in out and "6 problem(s) found" in captured.err
    report = json.loads((tmp_path / "report.json").read_text())["train"]
    # good + badvalues (+ wrongsize's 60 px): class counts of the loaded labels, values 3 and 7 left out
    assert report["class_pixels"] == {"bg": 40 + 37 + 60, "a": 39 + 39, "b": 0}
    assert report["ignored_pixels"] == 2 and report["images_without_label"] == 1
    got = set(report["problems"])

    # the messages are those that loading raises, word for word
    with pytest.raises(DataError) as missing:
        FolderDataset(root=str(root), class_names=CLASSES)
    assert str(missing.value) in got and "nolabel.png" in str(missing.value)
    (root / "images" / "nolabel.png").unlink()
    ds = FolderDataset(root=str(root), class_names=CLASSES)
    names = [p[0].stem for p in ds.pairs]
    raised = {}
    for i, name in enumerate(names):
        try:
            ds[i]
        except DataError as exc:
            raised[name] = str(exc)
    assert set(raised) == {"wrongsize", "badvalues", "badimage", "badlabel", "colourlabel"}
    assert set(raised.values()) | {str(missing.value)} == got
    assert "wrongsize.png is (6, 10) (H, W) but its image" in raised["wrongsize"]
    assert "badvalues.png has values [3, 7] outside [0, 3)" in raised["badvalues"]
    assert "cannot read image" in raised["badimage"] and "badimage.png" in raised["badimage"]
    assert "cannot read label" in raised["badlabel"] and "badlabel.png" in raised["badlabel"]
    assert "colourlabel.png is a colour (RGB) image" in raised["colourlabel"]


def test_training_refuses_bad_data_with_the_same_message(tmp_path, capsys):
    root = write_folder(tmp_path / "data")
    for name in ("wrongsize", "badimage", "badlabel", "colourlabel", "nolabel"):
        (root / "images" / f"{name}.png").unlink()
    cfg = folder_config(tmp_path, root)
    assert main(["data", "check", str(cfg)]) == 1
    message = next(line[4:] for line in capsys.readouterr().out.splitlines() if line.startswith("  - "))
    assert main(["train", str(cfg), "--work-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "badvalues.png has values [3, 7]" in err and "Traceback" not in err


def test_clean_data_passes_and_problems_are_collected_only_inside_the_check(tmp_path, capsys):
    root = write_folder(tmp_path / "data")
    for name in ("wrongsize", "badvalues", "badimage", "badlabel", "colourlabel", "nolabel"):
        (root / "images" / f"{name}.png").unlink()
    assert main(["data", "check", str(folder_config(tmp_path, root))]) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out and "bg 50.00%, a 48.75%, b 0.00%; ignored 1.25%" in out
    assert "classes with no pixel: b" in out
    with problems.collecting() as found:
        problems.report("x")
    assert found == ["x"]
    with pytest.raises(DataError, match="^y$"):
        problems.report("y")


@pytest.mark.shared_data
def test_data_check_on_real_camvid(shared_data, capsys, monkeypatch):
    monkeypatch.setenv("SEGZOO_DATA", str(shared_data))
    config = CONFIGS / "fcn" / "fcn8s_vgg16_camvid-480x360.yaml"
    assert main(["data", "check", str(config), "--split", "val", "--max-images", "3"]) == 0
    out = capsys.readouterr().out
    assert "images 101, labels 101" in out and "sizes (H x W): 360x480 (3)" in out and "sky" in out
