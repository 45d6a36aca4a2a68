"""``instance_folder``: images + instance-id PNGs, on hand-made folders and on nuclei."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from segzoo.data import InstanceFolderDataset
from segzoo.data.check import check_dataset
from segzoo.errors import DataError


def make_folder(root, ids_maps, image_size=None):
    (root / "images").mkdir(parents=True)
    (root / "instances").mkdir()
    for name, ids in ids_maps.items():
        h, w = image_size or ids.shape
        rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "images" / f"{name}.png")
        Image.fromarray(ids.astype(np.uint16)).save(root / "instances" / f"{name}.png")  # 16-bit ids


def id_map():
    ids = np.zeros((20, 24), dtype=np.int64)
    ids[2:6, 3:9] = 7       # ids need not be consecutive
    ids[10:18, 12:20] = 300  # nor fit in 8 bits
    return ids


def test_each_id_is_one_instance_with_its_box_mask_and_class(tmp_path):
    make_folder(tmp_path, {"a": id_map(), "empty": np.zeros((8, 10), dtype=np.int64)})
    (tmp_path / "instances" / "a.json").write_text(json.dumps({"300": 2}))
    ds = InstanceFolderDataset(root=str(tmp_path), class_names=["background", "cell", "debris"],
                               class_suffix=".json")
    assert len(ds) == 2 and ds.things() == [1, 2]
    s = ds.load(0)
    inst = s["instances"]
    assert inst["labels"].tolist() == [1, 2]  # id 7 -> instance_class 1, id 300 -> 2 from the json
    assert inst["boxes"].tolist() == [[3, 2, 9, 6], [12, 10, 20, 18]]  # XYXY, pixel edges
    assert inst["masks"].shape == (2, 20, 24) and inst["masks"].dtype == torch.uint8
    assert inst["masks"].sum((1, 2)).tolist() == [24, 64] and inst["iscrowd"].tolist() == [0, 0]
    assert torch.equal(s["mask"], torch.from_numpy(np.select([id_map() == 7, id_map() == 300], [1, 2], 0)))
    empty = ds.load(1)["instances"]  # an image without objects: empty targets of the right shapes
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 8, 10) and len(empty["labels"]) == 0


def test_bad_folders_raise_naming_the_file(tmp_path):
    make_folder(tmp_path / "size", {"a": id_map()}, image_size=(21, 24))
    with pytest.raises(DataError, match=r"a\.png"):
        InstanceFolderDataset(root=str(tmp_path / "size")).load(0)
    make_folder(tmp_path / "cls", {"a": id_map()})
    (tmp_path / "cls" / "instances" / "a.json").write_text(json.dumps({"7": 5}))
    with pytest.raises(DataError, match=r"a\.png: instance classes \[5\]"):
        InstanceFolderDataset(root=str(tmp_path / "cls"), class_suffix=".json").load(0)
    with pytest.raises(DataError):
        InstanceFolderDataset(root=str(tmp_path / "missing"))


@pytest.mark.shared_data
def test_nuclei_in_the_folder_layout(shared_data, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "instances").mkdir()
    shutil.copy(shared_data / "nuclei" / "image.png", tmp_path / "images" / "n.png")
    shutil.copy(shared_data / "nuclei" / "instances.png", tmp_path / "instances" / "n.png")
    s = InstanceFolderDataset(root=str(tmp_path), class_names=["background", "nucleus"]).load(0)
    assert s["image"].shape == (3, 512, 512) and s["image"].dtype == torch.uint8  # 16-bit grey -> 8-bit RGB
    assert len(s["instances"]["labels"]) == 125 and set(s["instances"]["labels"].tolist()) == {1}
    assert int(s["instances"]["masks"].sum()) == int((s["mask"] == 1).sum())
    # its 16-bit values are 0..235: the default mapping by bit depth leaves it dark (0..1) and data
    # check says so; a fixed image_range gives the stored values back
    raw = np.asarray(Image.open(shared_data / "nuclei" / "image.png"))
    assert int(s["image"].max()) == round(int(raw.max()) / 257) == 1
    ranged = InstanceFolderDataset(root=str(tmp_path), image_range=[0, 255]).load(0)["image"]
    assert torch.equal(ranged, torch.from_numpy(raw.astype(np.uint8)).expand(3, -1, -1))
    report = check_dataset(lambda: InstanceFolderDataset(root=str(tmp_path)))
    assert report.ok and "16-bit grey images hold only 0..235" in report.format()


def test_contour_option_marks_object_borders_as_an_extra_class(tmp_path):
    ids = np.zeros((8, 12), dtype=np.int64)
    ids[1:7, 1:6] = 4
    ids[1:7, 6:11] = 9  # touching id 4 along one column
    make_folder(tmp_path, {"a": ids})
    ds = InstanceFolderDataset(root=str(tmp_path), class_names=["background", "nucleus"], contour=True)
    assert ds.class_names == ("background", "nucleus", "contour") and ds.contour_class == 2
    assert ds.things() == [1]  # the contour is not an object class
    s = ds.load(0)
    mask = s["mask"].numpy()
    # the two touching columns and the outer ring are contour; the 3x3 and 3x3 insides stay nucleus
    assert (mask[2:6, 2:5] == 1).all() and (mask[2:6, 7:10] == 1).all()
    assert (mask[1:7, 5:7] == 2).all() and (mask[1, 1:11] == 2).all() and (mask[6, 1:11] == 2).all()
    assert (mask[ids == 0] == 0).all()
    assert s["instances"]["labels"].tolist() == [1, 1]  # instances unchanged
    assert InstanceFolderDataset(root=str(tmp_path)).load(0)["mask"].max() == 1  # off by default
