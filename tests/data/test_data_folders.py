"""Folders as they ship: image/label folders and suffixes of ``folder`` and ``instance_folder``,
COCO exports with their json and images elsewhere, duplicate names, split files, and one message
per problem in ``segzoo data check``."""

import json

import numpy as np
import pytest
import torch
from helpers.coco_folder import ignore_dropped_box, make_coco
from PIL import Image

from segzoo.config import load_config
from segzoo.data import COCODataset, FolderDataset, InstanceFolderDataset
from segzoo.data.check import check_dataset
from segzoo.errors import DataError

CLASSES = ["bg", "fg"]


def save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def simple_folder(root, names=("a", "b"), size=(8, 10)):
    for i, name in enumerate(names):
        save(root / "images" / f"{name}.png", np.full((*size, 3), i, np.uint8))
        save(root / "labels" / f"{name}.png", np.full(size, i % 2, np.uint8))
    return root


def test_duplicate_names_are_an_error_naming_both_files(tmp_path):
    root = simple_folder(tmp_path)
    save(root / "images" / "a.jpg", np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(DataError, match=r"images/a\.jpg and .*images/a\.png.*one file per name"):
        FolderDataset(root=str(root), class_names=CLASSES)
    # a split file that leaves the duplicate out is fine
    (root / "only_b.txt").write_text("b\n")
    assert len(FolderDataset(root=str(root), class_names=CLASSES, split_file="only_b.txt")) == 1
    report = check_dataset(lambda: FolderDataset(root=str(root), class_names=CLASSES))
    assert report.samples == 1 and len(report.problems) == 1 and "a.jpg" in report.problems[0]


def test_split_file_problems_name_the_split_file(tmp_path):
    root = simple_folder(tmp_path)
    (root / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"empty\.txt is empty") as err:
        FolderDataset(root=str(root), class_names=CLASSES, split_file="empty.txt")
    assert "no images" not in str(err.value)
    with pytest.raises(DataError, match=r"missing\.txt does not exist"):
        FolderDataset(root=str(root), class_names=CLASSES, split_file="missing.txt")
    (root / "names.txt").write_text("b.png\na\n")  # file names are accepted as well as stems
    assert [p.name for p, _ in FolderDataset(root=str(root), class_names=CLASSES, split_file="names.txt").pairs] \
        == ["b.png", "a.png"]


def test_instance_folder_size_mismatch_is_reported_once(tmp_path):
    save(tmp_path / "images" / "a.png", np.zeros((8, 10, 3), np.uint8))
    save(tmp_path / "instances" / "a.png", np.ones((6, 10), np.uint16))
    report = check_dataset(lambda: InstanceFolderDataset(root=str(tmp_path)))
    assert len(report.problems) == 1 and "(6, 10)" in report.problems[0]


def test_folder_readers_take_image_and_label_folders_and_suffixes(tmp_path):
    # a Kaggle/DeepGlobe-style export: train/images/<name>_sat.jpg, train/masks/<name>_mask.png
    for name in ("p1", "p2"):
        save(tmp_path / "train" / "images" / f"{name}_sat.jpg", np.zeros((8, 10, 3), np.uint8))
        save(tmp_path / "train" / "masks" / f"{name}_mask.png", np.ones((8, 10), np.uint8))
    save(tmp_path / "train" / "images" / "notes.png", np.zeros((8, 10, 3), np.uint8))  # not an image of the set
    ds = FolderDataset(root=str(tmp_path), class_names=CLASSES, img_dir="train/images", ann_dir="train/masks",
                       img_suffix="_sat.jpg", seg_suffix="_mask.png")
    assert [p.name for p, _ in ds.pairs] == ["p1_sat.jpg", "p2_sat.jpg"]
    assert (ds[1]["mask"] == 1).all() and ds[1]["meta"]["label_path"].endswith("p2_mask.png")
    inst = InstanceFolderDataset(root=str(tmp_path), img_dir="train/images", ann_dir="train/masks",
                                 img_suffix="_sat.jpg", seg_suffix="_mask.png")
    assert len(inst) == 2 and inst[0]["instances"]["labels"].tolist() == [1]
    with pytest.raises(DataError, match=r"no images \(\*_rgb\.png\)"):
        FolderDataset(root=str(tmp_path), class_names=CLASSES, img_dir="train/images", ann_dir="train/masks",
                      img_suffix="_rgb.png")


@ignore_dropped_box
def test_coco_export_with_its_json_and_images_elsewhere(tmp_path):
    src = make_coco(tmp_path / "src")  # the standard layout, moved the way exports ship
    root = tmp_path / "export"
    (root / "valid").mkdir(parents=True)
    for f in (src / "val2017").iterdir():
        f.rename(root / "valid" / f.name)
    (src / "annotations" / "instances_val2017.json").rename(root / "valid" / "_annotations.coco.json")
    ds = COCODataset(root=str(root), ann_file="valid/_annotations.coco.json", img_dir="valid")
    assert len(ds) == 3 and ds.class_names == ("background", "person", "car", "dog")
    assert ds[0]["instances"]["labels"].tolist() == [3, 1, 1] and ds[0]["image"].shape == (3, 24, 32)
    # panoptic json and PNG folder anywhere under root
    (root / "pan").mkdir()
    (src / "annotations" / "panoptic_val2017.json").rename(root / "pan" / "panoptic.json")
    (src / "annotations" / "panoptic_val2017").rename(root / "pan" / "pngs")
    pan = COCODataset(root=str(root), img_dir="valid", semantic="panoptic",
                      panoptic_json="pan/panoptic.json", panoptic_dir="pan/pngs")
    assert pan.class_names == ("person", "dog", "grass") and pan[0]["mask"][0, 25] == 2
    with pytest.raises(DataError, match=r"valid/missing\.json"):
        COCODataset(root=str(root), ann_file="valid/missing.json", img_dir="valid")


def test_config_accepts_the_reader_options(tmp_path):
    from conftest import CONFIGS

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"_base_: {CONFIGS / '_base_/default_runtime.yaml'}\n"
        "model: {name: fcn8s, backbone: vgg16_bn}\n"
        "data:\n"
        "  train: {dataset: {name: folder, root: r, class_names: [a, b], img_dir: train/images,\n"
        "          ann_dir: train/masks, img_suffix: _sat.jpg, seg_suffix: _mask.png, image_range: [0, 4095]}}\n"
        "  val: {dataset: {name: coco, root: r, ann_file: a.json, img_dir: imgs, panoptic_json: p.json,\n"
        "        panoptic_dir: p, semantic: panoptic}}\n")
    loaded = load_config(cfg)
    assert loaded.data.train.dataset.kwargs["img_suffix"] == "_sat.jpg"
    assert loaded.data.val.dataset.kwargs["panoptic_dir"] == "p"


def test_data_check_reports_image_value_ranges(tmp_path):
    root = simple_folder(tmp_path / "d", names=("a",))
    save(root / "images" / "g.png", np.array([[100, 235] * 5] * 8, np.uint16))
    save(root / "labels" / "g.png", np.zeros((8, 10), np.uint8))
    report = check_dataset(lambda: FolderDataset(root=str(root), class_names=CLASSES), "train")
    values = report.to_dict()["image_values"]
    assert values["16-bit grey"] == {"images": 1, "min": 100, "max": 235, "mapping": "value / 65535 * 255",
                                     "mapped_min": 0, "mapped_max": 1}
    assert values["8-bit colour"]["images"] == 1
    text = report.format()
    assert "16-bit grey 100..235 -> 0..1 (1 image, value / 65535 * 255)" in text
    assert "note: 16-bit grey images hold only 100..235" in text and report.ok  # a note, not a problem
    ranged = check_dataset(lambda: FolderDataset(root=str(root), class_names=CLASSES, image_range=[0, 235]))
    assert ranged.to_dict()["image_values"]["16-bit grey"]["mapped_max"] == 255
    assert "note:" not in ranged.format()


def test_data_check_counts_exif_turned_images(tmp_path):
    root = simple_folder(tmp_path, names=("a",))
    im = Image.fromarray(np.zeros((10, 8, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(root / "images" / "a.png", exif=exif)
    report = check_dataset(lambda: FolderDataset(root=str(root), class_names=CLASSES))
    assert report.ok and report.to_dict()["exif_turned"] == 1
    assert "1 image(s) turned by their EXIF orientation" in report.format()
    assert json.dumps(report.to_dict())  # the --out report stays JSON
    assert torch.equal(torch.tensor(report.sizes.most_common(1)[0][0]), torch.tensor([8, 10]))


def test_dataset_snippets_in_the_docs_are_valid(tmp_path):
    import re

    import yaml
    from conftest import REPO

    from segzoo.registry import DATASETS

    doc = (REPO / "docs" / "datasets.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    snippets = [c for b in blocks for c in re.split(r"\n(?=dataset:)", b.strip())]
    assert len(snippets) >= 4
    for text in snippets:
        ds = yaml.safe_load(text)["dataset"]
        params = DATASETS.config_params(ds.pop("name"))
        assert set(ds) <= set(params), f"{text}: {set(ds) - set(params)}"


@ignore_dropped_box
def test_coco_image_size_must_match_the_json(tmp_path):
    root = make_coco(tmp_path / "coco")
    # an image re-saved at another size than its json entry says: polygons would land elsewhere
    save(root / "val2017" / "000000000007.jpg", np.zeros((32, 24, 3), np.uint8))
    ds = COCODataset(root=str(root), split="val2017")
    with pytest.raises(DataError, match=r"instances_val2017\.json.*image id 7.*\(24, 32\).*000000000007\.jpg is \(32, 24\)"):
        ds[0]
    # a phone photo stored turned, with EXIF orientation 6: the json gives the displayed size
    im = Image.fromarray(np.zeros((32, 24, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(root / "val2017" / "000000000007.jpg", exif=exif)
    assert ds[0]["image"].shape == (3, 24, 32) and ds[0]["instances"]["masks"].shape[-2:] == (24, 32)
