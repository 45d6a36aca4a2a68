"""VOC, Cityscapes, ADE20K and COCO readers on tiny fixtures written here in the real layouts,
and COCO on the shared coco128."""

import json

import numpy as np
import pytest
import torch
from helpers.coco_folder import ignore_dropped_box, make_coco, save_rgb
from PIL import Image

from segzoo.data import (
    ADE20KDataset,
    CityscapesDataset,
    COCODataset,
    VOCDataset,
    build_dataloader,
    build_pipeline,
)
from segzoo.errors import DataError


def save_palette_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr.astype(np.uint8), mode="L").convert("P")
    im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    im.save(path)


# ----------------------------------------------------------------------------- VOC
def make_voc(root):
    voc = root / "VOCdevkit" / "VOC2012"
    cls = np.zeros((20, 24), np.uint8)
    obj = np.zeros((20, 24), np.uint8)
    cls[2:8, 2:10], obj[2:8, 2:10] = 15, 1  # person
    cls[10:18, 12:22], obj[10:18, 12:22] = 12, 2  # dog
    cls[1, :], obj[1, :] = 255, 255  # a void border line
    cls[10:12, 2:6], obj[10:12, 2:6] = 15, 3  # a second person
    for name, seed in (("2007_000032", 0), ("2007_000039", 1)):
        save_rgb(voc / "JPEGImages" / f"{name}.jpg", 20, 24, seed)
        save_palette_png(voc / "SegmentationClass" / f"{name}.png", cls)
        save_palette_png(voc / "SegmentationObject" / f"{name}.png", obj)
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("2007_000032\n")
    (sets / "val.txt").write_text("2007_000039\n")
    return voc


def test_voc_semantic_instances_and_sbd_aug(tmp_path):
    voc = make_voc(tmp_path)
    ds = VOCDataset(root=str(tmp_path / "VOCdevkit"), split="train", instances=True)
    assert len(ds) == 1 and ds.num_classes == 21 and ds.class_names[15] == "person"
    s = ds[0]
    mask = s["mask"].as_subclass(torch.Tensor)
    assert (mask[1] == 255).all() and mask[3, 3] == 15 and mask[12, 15] == 12 and mask[0, 0] == 0
    inst = s["instances"]
    assert inst["labels"].tolist() == [15, 12, 15] and inst["iscrowd"].tolist() == [0, 0, 0]
    assert inst["boxes"].tolist()[1] == [12.0, 10.0, 22.0, 18.0] and inst["masks"].shape == (3, 20, 24)
    assert inst["masks"].dtype == torch.uint8 and int(inst["masks"][0].sum()) == 6 * 8
    with pytest.raises(DataError, match="SegmentationClassAug.*aug: false"):
        VOCDataset(root=str(voc), split="train", aug=True)
    # SBD in mmseg's layout: aug.txt names + SegmentationClassAug labels
    save_rgb(voc / "JPEGImages" / "2008_000123.jpg", 20, 24, 3)
    save_palette_png(voc / "SegmentationClassAug" / "2008_000123.png", np.full((20, 24), 7))
    (voc / "ImageSets" / "Segmentation" / "aug.txt").write_text("2007_000032\n2008_000123\n")
    aug = VOCDataset(root=str(voc), split="train", aug=True, ignore_index=254)
    assert len(aug) == 2 and (aug[1]["mask"] == 7).all()
    assert (aug[0]["mask"].as_subclass(torch.Tensor)[1] == 254).all()  # void follows ignore_index


# ----------------------------------------------------------------------------- Cityscapes
def make_cityscapes(root):
    label_ids = np.full((16, 32), 7, np.uint8)  # road
    label_ids[0:4] = 23  # sky
    label_ids[4:6, 0:8] = 9  # parking: ignored in evaluation
    label_ids[8:14, 2:8] = 26  # a car
    label_ids[8:14, 20:30] = 24  # persons
    label_ids[15, :] = 0  # unlabelled
    inst = label_ids.astype(np.uint16)
    inst[8:14, 2:8] = 26000
    inst[8:14, 20:24] = 24000
    inst[8:14, 24:27] = 24001
    inst[8:14, 27:30] = 24  # a group of persons: crowd
    for split, city in (("train", "aachen"), ("val", "lindau")):
        stem = f"{city}_000000_000019"
        save_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", 16, 32)
        gt = root / "gtFine" / split / city
        gt.mkdir(parents=True)
        Image.fromarray(label_ids).save(gt / f"{stem}_gtFine_labelIds.png")
        Image.fromarray(inst).save(gt / f"{stem}_gtFine_instanceIds.png")  # 16-bit PNG
    return root


def test_cityscapes_train_ids_and_instances(tmp_path):
    root = make_cityscapes(tmp_path / "cityscapes")
    ds = CityscapesDataset(root=str(root), split="val", instances=True)
    assert len(ds) == 1 and ds.num_classes == 19
    mask = ds[0]["mask"].as_subclass(torch.Tensor)
    assert mask[0, 0] == 10 and mask[7, 10] == 0 and mask[10, 3] == 13 and mask[10, 21] == 11
    assert (mask[4:6, 0:8] == 255).all() and (mask[15] == 255).all()  # parking and unlabelled
    inst = ds[0]["instances"]
    # in value order: the person group (24, crowd), persons 24000 and 24001 (label 1: person is
    # the 1st thing class), the car 26000 (label 3)
    assert inst["labels"].tolist() == [1, 1, 1, 3] and inst["iscrowd"].tolist() == [1, 0, 0, 0]
    assert inst["masks"].sum((1, 2)).tolist() == [18, 24, 18, 36]
    assert inst["boxes"].tolist()[3] == [2.0, 8.0, 8.0, 14.0]
    assert [ds.class_names[c] for c in ds.things()][:3] == ["person", "rider", "car"]
    (root / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(DataError, match=r"1 image\(s\).*aachen_000000_000019_gtFine_labelIds\.png"):
        CityscapesDataset(root=str(root), split="train")


# ----------------------------------------------------------------------------- ADE20K
def test_ade20k_reduce_zero_label(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    ann = np.array([[0, 1, 150], [2, 0, 75]], np.uint8).repeat(4, 0).repeat(4, 1)
    for folder, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        save_rgb(root / "images" / folder / f"{prefix}_00000001.jpg", 8, 12)
        (root / "annotations" / folder).mkdir(parents=True)
        Image.fromarray(ann).save(root / "annotations" / folder / f"{prefix}_00000001.png")
    ds = ADE20KDataset(root=str(root), split="val")
    assert ds.num_classes == 150 and ds.class_names[0] == "wall" and ds.class_names[149] == "flag"
    m = ds[0]["mask"].as_subclass(torch.Tensor)
    assert m[0, 0] == 255 and m[0, 4] == 0 and m[0, 8] == 149 and m[4, 8] == 74
    raw = ADE20KDataset(root=str(root), split="train", reduce_zero_label=False)
    assert raw.num_classes == 151 and raw[0]["mask"][0, 8] == 150


# ----------------------------------------------------------------------------- COCO
def test_coco_instances_labels_crowd_and_semantic_map(tmp_path):
    root = make_coco(tmp_path / "coco")
    dropped = r"instances_val2017\.json: 1 annotation\(s\) with a zero-width or zero-height box are dropped"
    with pytest.warns(UserWarning, match=dropped):  # the fixture's one degenerate box, named with its json
        ds = COCODataset(root=str(root), split="val2017")
    assert len(ds) == 3 and [s for s in ds.image_ids] == [7, 42, 99]
    # categories sorted by COCO id: person (1) -> 1, car (3) -> 2, dog (18) -> 3
    assert ds.class_names == ("background", "person", "car", "dog")
    assert ds.label_to_category == {1: 1, 2: 3, 3: 18}
    s = ds[0]
    inst = s["instances"]
    assert s["meta"]["image_id"] == 7
    assert inst["labels"].tolist() == [3, 1, 1] and inst["iscrowd"].tolist() == [0, 0, 1]
    assert inst["boxes"].tolist()[0] == [2.0, 2.0, 12.0, 10.0]
    assert inst["masks"].shape == (3, 24, 32) and int(inst["masks"][2].sum()) == 80  # crowd RLE decoded
    assert inst["boxes"].canvas_size == (24, 32) and inst["masks"].dtype == torch.uint8
    m = s["mask"].as_subclass(torch.Tensor)
    assert m[5, 5] == 1 and m[3, 3] == 3 and (m[16:24, 0:10] == 255).all() and m[0, 31] == 0
    assert ds[1]["instances"]["labels"].tolist() == [2]  # the degenerate box was dropped
    empty = ds[2]["instances"]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 24, 32)
    assert empty["labels"].shape == (0,) and empty["iscrowd"].shape == (0,) and (ds[2]["mask"] == 0).all()
    with pytest.warns(UserWarning, match=dropped):
        no_crowd = COCODataset(root=str(root), split="val2017", include_crowd=False)
    assert no_crowd[0]["instances"]["labels"].tolist() == [3, 1]
    # through transforms and the collate function, as a Mask R-CNN would get them
    ds.transforms = build_pipeline([{"name": "resize", "size": [12, 16]}, {"name": "random_flip", "p": 1.0}])
    batch = next(iter(build_dataloader(ds, batch_size=3, shuffle=False)))
    assert batch["image"].shape == (3, 3, 12, 16) and batch["instances"][0]["masks"].shape == (3, 12, 16)
    assert batch["instances"][0]["boxes"].tolist()[0] == [10.0, 1.0, 15.0, 5.0]  # flipped, halved
    assert batch["instances"][2]["boxes"].shape == (0, 4)


def test_coco_panoptic_semantic_map_and_thing_segments(tmp_path):
    root = make_coco(tmp_path / "coco")
    ds = COCODataset(root=str(root), split="val2017", semantic="panoptic")
    assert ds.class_names == ("person", "dog", "grass") and ds.thing_classes == (0, 1)
    s = ds[0]
    m = s["mask"].as_subclass(torch.Tensor)
    assert m[5, 5] == 1 and m[20, 3] == 0 and m[0, 25] == 2 and m[12, 14] == 255
    assert s["instances"]["labels"].tolist() == [2, 1] and s["instances"]["iscrowd"].tolist() == [0, 1]
    assert ds.label_to_category == {1: 1, 2: 18}
    assert (ds[1]["mask"] == 255).all() and ds[1]["instances"]["labels"].shape == (0,)


def test_coco_missing_and_broken_files_name_the_file(tmp_path):
    root = make_coco(tmp_path / "coco")
    with pytest.raises(DataError, match="instances_train2017.json|train2017"):
        COCODataset(root=str(root), split="train2017")
    (root / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(DataError, match=r"cannot read annotation .*instances_val2017\.json"):
        COCODataset(root=str(root), split="val2017")


@pytest.mark.shared_data
def test_real_coco128_instances(shared_data):
    ds = COCODataset(root=str(shared_data / "coco128"), split="train2017")
    assert len(ds) == 128 and ds.num_classes == 81 and len(ds.categories) == 80
    assert ds.label_to_category[1] == 1 and ds.label_to_category[80] == 90  # ids 1..90 with gaps
    raw = json.loads((shared_data / "coco128" / "annotations" / "instances_train2017.json").read_text())
    expected = sum(a["bbox"][2] > 0 and a["bbox"][3] > 0 for a in raw["annotations"])
    n_ann = n_crowd = n_empty = 0
    for i in range(len(ds)):
        s = ds.load(i)
        inst = s["instances"]
        n = len(inst["labels"])
        n_ann += n
        n_crowd += int(inst["iscrowd"].sum())
        n_empty += n == 0
        assert inst["masks"].shape == (n, *s["image"].shape[-2:]) and inst["boxes"].shape == (n, 4)
        if n:
            assert 1 <= int(inst["labels"].min()) and int(inst["labels"].max()) <= 80
        if int(inst["iscrowd"].sum()):
            assert (s["mask"] == 255).any()  # crowd regions are ignored in the semantic map
    assert (n_crowd, n_empty, n_ann) == (10, 2, expected) and expected == 939


# ----------------------------------------------------------------------------- configs
CONFIG_FIXTURES = {
    "voc12-512x512.yaml": lambda tmp: ("data.val.dataset.root", make_voc(tmp)),
    "voc12aug-512x512.yaml": None,
    "cityscapes-512x1024.yaml": lambda tmp: ("data.val.dataset.root", make_cityscapes(tmp / "cityscapes")),
    "ade20k-512x512.yaml": None,
    "coco-512x512.yaml": lambda tmp: ("data.val.dataset.root", make_coco(tmp / "coco")),
    "coco128-320.yaml": None,
}


@ignore_dropped_box
@pytest.mark.parametrize("name", sorted(CONFIG_FIXTURES))
def test_dataset_configs_validate_and_load_their_val_split(name, tmp_path):
    from conftest import CONFIGS

    from segzoo import builders
    from segzoo.config import load_config

    cfg_file = tmp_path / "model.yaml"
    cfg_file.write_text(f"_base_: {CONFIGS / '_base_' / 'datasets' / name}\nmodel: {{name: fcn8s}}\n")
    cfg = load_config(cfg_file)
    assert cfg.data.train is not None and cfg.data.val is not None
    make = CONFIG_FIXTURES[name]
    if make is None:
        return
    key, root = make(tmp_path)
    cfg = load_config(cfg_file, [f"{key}={root}"])
    ds = builders.dataset_from_split(cfg, cfg.data.val)
    sample = ds[0]
    assert sample["image"].dtype == torch.float32 and sample["mask"].shape == sample["image"].shape[-2:]
