"""Reading images and labels: the fixed grey-value mapping of 16-bit and float images, EXIF
orientation, non-finite values and labels that are not single-channel maps."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from segzoo.data import FolderDataset, build_dataloader, collate_semantic
from segzoo.data.io import read_image, read_label
from segzoo.errors import DataError

CLASSES = ["bg", "fg"]


def make_pairs(root, images: dict, label_size=None, ext=".png"):
    """A folder dataset: ``images`` maps a name to an array (or a PIL image) saved as the image."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    for name, arr in images.items():
        im = arr if isinstance(arr, Image.Image) else Image.fromarray(arr)
        im.save(root / "images" / f"{name}{ext}", **({"exif": im.getexif()} if isinstance(arr, Image.Image) else {}))
        h, w = label_size or (im.height, im.width)
        Image.fromarray(np.zeros((h, w), np.uint8)).save(root / "labels" / f"{name}.png")
    return root


# ----------------------------------------------------------------------------- 16-bit / float grey
def grey16(value_at_0, brightest):
    arr = np.zeros((8, 8), np.uint16)
    arr[0, 0] = value_at_0
    arr[7, 7] = brightest
    return arr


@pytest.mark.parametrize("num_workers", [0, 2])
def test_16bit_grey_values_map_the_same_way_in_every_image(tmp_path, num_workers):
    # the same stored value 500 in a dim and in a bright image
    root = make_pairs(tmp_path, {"dim": grey16(500, 1000), "bright": grey16(500, 60000)})
    ds = FolderDataset(root=str(root), class_names=CLASSES)
    batch = next(iter(build_dataloader(ds, batch_size=2, shuffle=False, num_workers=num_workers)))
    bright, dim = (ds.load(i)["image"] for i in range(2))  # uint8 (3, H, W), sorted by name
    assert bright[:, 0, 0].tolist() == dim[:, 0, 0].tolist() == [2, 2, 2]  # round(500 / 257)
    assert bright[0, 7, 7] == round(60000 / 257) and dim[0, 7, 7] == round(1000 / 257)
    assert batch["image"].dtype == torch.uint8 and (batch["image"][:, :, 0, 0] == 2).all()  # in workers too


def test_configured_range_and_percentiles(tmp_path):
    root = make_pairs(tmp_path, {"dim": grey16(500, 1000), "bright": grey16(500, 60000)})
    ranged = FolderDataset(root=str(root), class_names=CLASSES, image_range=[0, 1000])
    b, a = ranged.load(0)["image"], ranged.load(1)["image"]  # bright, dim
    assert a[0, 0, 0] == b[0, 0, 0] == 128  # 500 of 0..1000 -> 127.5 -> 128, in both images
    assert a[0, 7, 7] == b[0, 7, 7] == 255  # clipped above the range
    pct = FolderDataset(root=str(root), class_names=CLASSES, image_percentiles=[0, 100])
    b, a = pct.load(0)["image"], pct.load(1)["image"]  # per image: min -> 0, max -> 255
    assert a[0, 7, 7] == b[0, 7, 7] == 255 and a[0, 1, 1] == b[0, 1, 1] == 0
    assert a[0, 0, 0] == 128 and b[0, 0, 0] == round(500 / 60000 * 255)
    with pytest.raises(ValueError, match="image_range.*image_percentiles"):
        FolderDataset(root=str(root), class_names=CLASSES, image_range=[0, 1], image_percentiles=[1, 99])
    with pytest.raises(ValueError, match="image_range"):
        FolderDataset(root=str(root), class_names=CLASSES, image_range=[10, 10])


def test_float_images_are_0_to_1_and_other_ranges_name_the_file(tmp_path):
    arr = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    root = make_pairs(tmp_path / "unit", {"f": arr}, ext=".tif")
    img = FolderDataset(root=str(root), class_names=CLASSES).load(0)["image"]
    assert img[0, 0, 0] == 0 and img[0, 7, 7] == 255 and img.dtype == torch.uint8
    root = make_pairs(tmp_path / "wide", {"g": arr * 4000}, ext=".tif")
    with pytest.raises(DataError, match=r"g\.tif.*values 0\.\.4000.*image_range"):
        FolderDataset(root=str(root), class_names=CLASSES).load(0)
    img = FolderDataset(root=str(root), class_names=CLASSES, image_range=[0, 4000]).load(0)["image"]
    assert img[0, 7, 7] == 255


def test_non_finite_float_image_names_the_file(tmp_path):
    arr = np.full((8, 8), 0.5, np.float32)
    arr[3, 4] = np.nan
    root = make_pairs(tmp_path / "nan", {"n": arr}, ext=".tif")
    with pytest.raises(DataError, match=r"n\.tif.*1 non-finite"):
        FolderDataset(root=str(root), class_names=CLASSES, image_range=[0, 1]).load(0)
    # raised in a dataloader worker, it reaches the main process naming the file
    loader = DataLoader(FolderDataset(root=str(root), class_names=CLASSES), batch_size=1, num_workers=2,
                        collate_fn=collate_semantic, timeout=60)
    with pytest.raises(DataError, match=r"n\.tif.*non-finite"):
        next(iter(loader))
    arr[3, 4] = np.inf
    Image.fromarray(arr).save(tmp_path / "inf.tif")
    with pytest.raises(DataError, match=r"inf\.tif.*non-finite"):
        read_image(tmp_path / "inf.tif")


# ----------------------------------------------------------------------------- EXIF orientation
def with_orientation(displayed: np.ndarray, orientation: int = 6) -> Image.Image:
    """The stored image a camera writes for ``displayed`` with EXIF orientation 6 (turn the stored
    pixels 90 degrees clockwise to show them)."""
    im = Image.fromarray(np.ascontiguousarray(np.rot90(displayed, k=1)))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    return im


def displayed_pattern(h, w):
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2, : w // 3] = (255, 0, 0)  # a red block in the top-left corner
    arr[h // 2:, w // 2:] = (0, 0, 255)
    return arr


def test_exif_orientation_is_applied_like_annotation_tools(tmp_path):
    shown = displayed_pattern(32, 32)  # square: no size error would reveal a misalignment
    root = make_pairs(tmp_path, {"phone": with_orientation(shown)})
    img = FolderDataset(root=str(root), class_names=CLASSES).load(0)["image"]
    assert torch.equal(img, torch.from_numpy(shown).permute(2, 0, 1))


def test_exif_explains_a_size_mismatch(tmp_path):
    shown = displayed_pattern(24, 40)
    root = make_pairs(tmp_path / "ok", {"phone": with_orientation(shown)}, label_size=(24, 40))
    assert FolderDataset(root=str(root), class_names=CLASSES).load(0)["image"].shape == (3, 24, 40)
    # a label drawn on the stored (unrotated) pixels
    root = make_pairs(tmp_path / "bad", {"phone": with_orientation(shown)}, label_size=(40, 24))
    with pytest.raises(DataError, match=r"phone\.png.*EXIF orientation 6"):
        FolderDataset(root=str(root), class_names=CLASSES).load(0)
    # a plain size mismatch does not mention EXIF
    root = make_pairs(tmp_path / "plain", {"x": shown}, label_size=(40, 24))
    with pytest.raises(DataError, match="labels must match") as err:
        FolderDataset(root=str(root), class_names=CLASSES).load(0)
    assert "EXIF" not in str(err.value)


# ----------------------------------------------------------------------------- labels
def test_grey_alpha_label_says_what_is_wrong(tmp_path):
    Image.fromarray(np.zeros((8, 8, 2), np.uint8), mode="LA").save(tmp_path / "la.png")
    with pytest.raises(DataError, match=r"la\.png is a grey \+ alpha \(LA\) image.*single-channel") as err:
        read_label(tmp_path / "la.png")
    assert "size" not in str(err.value)
    root = make_pairs(tmp_path / "ds", {"a": np.zeros((8, 8, 3), np.uint8)})
    Image.fromarray(np.zeros((8, 8, 2), np.uint8), mode="LA").save(root / "labels" / "a.png")
    with pytest.raises(DataError, match="alpha"):
        FolderDataset(root=str(root), class_names=CLASSES).load(0)


def test_float_label_with_nan_names_the_file(tmp_path):
    arr = np.zeros((8, 8), np.float32)
    arr[1, 1] = np.nan
    Image.fromarray(arr).save(tmp_path / "lbl.tif")
    with pytest.raises(DataError, match=r"lbl\.tif.*non-finite"):
        read_label(tmp_path / "lbl.tif")
