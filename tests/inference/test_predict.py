"""`segzoo predict` with inference modes and batching, and the instance-model path (COCO json)."""

import json

import numpy as np
from conftest import CONFIGS, StubInstanceModel
from PIL import Image
from pycocotools.coco import COCO

from segzoo.checkpoint import save_checkpoint
from segzoo.cli import main


def write_images(folder, sizes):
    folder.mkdir()
    for i, size in enumerate(sizes):
        arr = np.random.default_rng(i).integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i}.png")


def test_instance_model_predicts_labels_overlays_and_coco_json(stub_instance, tmp_path, capsys):
    cfg = tmp_path / "stub.yaml"
    cfg.write_text(f"_base_: {CONFIGS / '_base_/datasets/shapes-64x64.yaml'}\n"
                   "model: {name: stub_instance}\n"
                   "data: {val: {transforms: [{name: resize, size: [32, 32]}]}}\n")
    ckpt = save_checkpoint({"model": StubInstanceModel(4).state_dict(),
                            "meta": {"num_classes": 4, "class_names": ["bg", "circle", "square", "triangle"],
                                     "palette": [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]}},
                           tmp_path / "stub.pt")
    write_images(tmp_path / "images", [(40, 56), (64, 48)])
    out = tmp_path / "pred"
    assert main(["predict", str(cfg), "--checkpoint", str(ckpt), "--input", str(tmp_path / "images"),
                 "--output", str(out), "--batch-size", "2"]) == 0
    assert "instances.json" in capsys.readouterr().out
    label = np.asarray(Image.open(out / "labels" / "img0.png"))
    assert label.shape == (40, 56)
    # the confident square detection (label 2) is pasted, rescaled from 32x32 to 40x56; the weak
    # detection is under eval.score_threshold: background elsewhere
    assert set(np.unique(label)) == {0, 2}
    ys, xs = np.nonzero(label == 2)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (10, 30, 14, 42)
    coco = COCO(str(out / "instances.json"))
    assert [coco.imgs[i]["file_name"] for i in sorted(coco.imgs)] == ["img0.png", "img1.png"]
    assert (coco.imgs[2]["height"], coco.imgs[2]["width"]) == (64, 48)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(anns) == 2 and anns[0]["bbox"] == [14.0, 10.0, 28.0, 20.0] and anns[0]["score"] > 0.89
    assert coco.annToMask(anns[0]).sum() == 20 * 28 and coco.cats[2]["name"] == "square"


def test_semantic_predict_in_slide_mode_with_batches_matches_single_images(tiny_config, tiny_checkpoint,
                                                                          tmp_path, capsys):
    ckpt = str(tiny_checkpoint)
    write_images(tmp_path / "images", [(32, 40), (32, 40), (36, 35)])
    slide = ["--set", "eval.mode=slide", "eval.crop_size=[32, 32]", "eval.stride=[16, 16]", "eval.tta.flip=true"]
    for name, bs in (("one", "1"), ("three", "3")):
        assert main(["predict", str(tiny_config), "--checkpoint", ckpt, "--input", str(tmp_path / "images"),
                     "--output", str(tmp_path / name), "--batch-size", bs, *slide]) == 0
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "one" / "labels" / f"img{i}.png"))
        b = np.asarray(Image.open(tmp_path / "three" / "labels" / f"img{i}.png"))
        np.testing.assert_array_equal(a, b)
    assert np.asarray(Image.open(tmp_path / "one" / "labels" / "img2.png")).shape == (36, 35)
    assert not (tmp_path / "one" / "instances.json").exists()
    assert main(["predict", str(tiny_config), "--checkpoint", ckpt, "--input", str(tmp_path / "images"),
                 "--output", str(tmp_path / "bad"), "--set", "eval.mode=slide"]) == 2
    assert "'eval': slide mode needs crop_size" in capsys.readouterr().err


def test_eval_cross_task_writes_both_rows_and_coco_results(tiny_config, tiny_checkpoint, capsys):
    # --cross-task switches the val dataset to instance targets (shapes: with_instances)
    assert main(["eval", str(tiny_config), "--checkpoint", str(tiny_checkpoint), "--cross-task"]) == 0
    out = capsys.readouterr().out
    assert "mask" in out and "AP50" in out and "mIoU" in out
    wd = tiny_checkpoint.parent.parent
    report = json.loads((wd / "eval_last.json").read_text())
    assert report["instance_source"] == "components" and 0 <= report["mask_AP"] <= 1
    assert "mBIoU" in report and "fwIoU" in report and "mDice" in report
    assert isinstance(json.loads((wd / "eval_last_coco_results.json").read_text()), list)
