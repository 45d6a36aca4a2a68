"""Keypoints in the data: shapes' extreme points, the COCO keypoints json, and transforms that move
them with the image, swap left and right in flips and mark those that leave the image."""

import json

import numpy as np
import pytest
import torch
from helpers.version_marks import needs_keypoint_transforms
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from segzoo.data.coco import COCODataset
from segzoo.data.instances import SanitizeInstances
from segzoo.data.keypoints import COCO_PERSON_KEYPOINTS, add_keypoints, flip_index, keypoints_xyv
from segzoo.data.shapes import ShapesDataset
from segzoo.data.transforms import build_pipeline

NO_NORM = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


def test_flip_index_pairs_left_and_right_by_name():
    assert flip_index(COCO_PERSON_KEYPOINTS) == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert flip_index(["top", "right", "bottom", "left"]) == [0, 3, 2, 1]
    assert flip_index(["head", "l_hand", "r_hand", "tail"]) == [0, 2, 1, 3]
    with pytest.raises(ValueError, match="repeat"):
        flip_index(["a", "a"])


@needs_keypoint_transforms
def test_shapes_keypoints_leave_the_images_unchanged_and_sit_on_the_outline():
    kp_set = ShapesDataset(keypoints=True, num_images=12)
    plain = ShapesDataset(with_instances=True, num_images=12)
    seen = torch.zeros(3)
    for i in range(12):
        s, p = kp_set[i], plain[i]
        assert torch.equal(s["image"], p["image"]) and torch.equal(s["mask"], p["mask"])
        inst = s["instances"]
        assert torch.equal(inst["masks"], p["instances"]["masks"])
        kp = keypoints_xyv(inst)
        assert kp.shape == (len(inst["labels"]), 4, 3)
        for k in range(len(kp)):
            box = inst["boxes"][k]
            vis = kp[k, :, 2] == 2
            xy = kp[k, vis, :2]  # visible extreme points lie on the visible object's box
            assert bool(((xy[:, 0] >= box[0] - 1.5) & (xy[:, 0] <= box[2] + 0.5)).all())
            assert bool(((xy[:, 1] >= box[1] - 1.5) & (xy[:, 1] <= box[3] + 0.5)).all())
            top, right, bottom, left = kp[k, :, :2]
            assert top[1] <= min(right[1], left[1], bottom[1]) and right[0] >= max(left[0], top[0], bottom[0])
        for v in range(3):
            seen[v] += int((kp[..., 2] == v).sum())
    assert seen.min() > 0  # outside the image, occluded and visible points all occur


def test_shapes_polygon_extreme_points_are_pils_vertices():
    from PIL import ImageDraw

    ds = ShapesDataset(keypoints=True)
    for cls, sides in ((2, 4), (3, 3)):
        shape = (cls, 30.0, 28.0, 11.0, 37.0, None)
        pil = np.array(ImageDraw._compute_regular_polygon_vertices((30.0, 28.0, 11.0), sides, 37.0))
        for p in ds.extreme_points(shape):
            assert np.abs(pil - p).sum(1).min() < 0.02


def _flip(sample, pipeline_flip):
    return build_pipeline([pipeline_flip], **NO_NORM)(sample)


@needs_keypoint_transforms
def test_random_flip_swaps_left_and_right_shape_keypoints():
    ds = ShapesDataset(keypoints=True, num_images=4)
    s = ds[1]
    out = _flip(s, {"name": "random_flip", "p": 1.0})
    w = s["image"].shape[-1]
    before, after = keypoints_xyv(s["instances"]), keypoints_xyv(out["instances"])
    # the flipped "right" point is the mirrored "left" one and vice versa; top/bottom only mirror
    torch.testing.assert_close(after[:, 1, 0], w - 1 - before[:, 3, 0])
    torch.testing.assert_close(after[:, 3, 0], w - 1 - before[:, 1, 0])
    torch.testing.assert_close(after[:, 0, 0], w - 1 - before[:, 0, 0])
    assert torch.equal(after[:, 1, 2], before[:, 3, 2]) and torch.equal(after[:, 3, 2], before[:, 1, 2])
    assert bool((after[:, 1, 0] >= after[:, 3, 0]).all())  # "right" is still the rightmost point


def test_random_flip_draws_the_same_random_numbers_as_v2s():
    ds = ShapesDataset(with_instances=True, num_images=6)
    ours = build_pipeline([{"name": "random_flip", "p": 0.5}], **NO_NORM)
    ref = v2.Compose([v2.RandomHorizontalFlip(0.5), *build_pipeline([], **NO_NORM).transforms])
    torch.manual_seed(3)
    a = [ours(ds[i])["image"] for i in range(6)]
    torch.manual_seed(3)
    b = [ref(ds[i])["image"] for i in range(6)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def _person_coco(tmp_path, w=40, h=30):
    """A COCO keypoints json: one person facing the camera (its left eye on the image's right)."""
    (tmp_path / "val2017").mkdir()
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(tmp_path / "val2017" / "a.png")
    kp = [0] * 51
    kp[0:3] = [20, 8, 2]    # nose
    kp[3:6] = [23, 6, 2]    # left_eye: image right
    kp[6:9] = [17, 6, 1]    # right_eye: image left, occluded
    kp[15:18] = [28, 14, 2]  # left_shoulder
    data = {"images": [{"id": 1, "file_name": "a.png", "height": h, "width": w}],
            "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_PERSON_KEYPOINTS),
                            "skeleton": [[16, 14], [1, 2]]}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [10, 2, 22, 26],
                             "area": 300, "segmentation": [[10, 2, 32, 2, 32, 28, 10, 28]],
                             "keypoints": kp, "num_keypoints": 4}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))
    return tmp_path


@needs_keypoint_transforms
def test_coco_keypoints_flip_keeps_left_on_the_persons_left(tmp_path):
    ds = COCODataset(root=str(_person_coco(tmp_path)), split="val2017", keypoints=True)
    assert ds.keypoint_names == COCO_PERSON_KEYPOINTS and ds.skeleton == ((15, 13), (0, 1))
    assert ds.keypoint_sigmas[0] == 0.026 and len(ds.keypoint_sigmas) == 17
    s = ds[0]
    kp = keypoints_xyv(s["instances"])[0]
    assert kp[1].tolist() == [23, 6, 2] and kp[2].tolist() == [17, 6, 1] and kp[3, 2] == 0
    flipped = keypoints_xyv(_flip(ds[0], {"name": "random_flip", "p": 1.0})["instances"])[0]
    # the mirrored person still faces the camera: its left eye is on the image's right, right eye
    # occluded; the left shoulder is the mirror of the right one (unlabelled stays unlabelled)
    assert flipped[1].tolist() == [39 - 17, 6, 1] and flipped[2].tolist() == [39 - 23, 6, 2]
    assert flipped[1, 0] > flipped[0, 0] > flipped[2, 0]
    assert flipped[6, 2] == 2 and flipped[6, 0] == 39 - 28 and flipped[5, 2] == 0
    # a flip that does not swap puts the left eye on the image's left: the corruption tested above
    plain = v2.Compose([v2.RandomHorizontalFlip(1.0), *build_pipeline([], **NO_NORM).transforms])(ds[0])
    wrong = keypoints_xyv(plain["instances"])[0]
    assert wrong[1, 0] < wrong[0, 0]


@needs_keypoint_transforms
def test_crop_marks_keypoints_that_leave_the_image_and_drops_them_with_their_instance(tmp_path):
    ds = COCODataset(root=str(_person_coco(tmp_path)), split="val2017", keypoints=True)
    s = ds[0]
    resized = keypoints_xyv(build_pipeline([{"name": "resize", "size": [60, 80]}], **NO_NORM)(ds[0])["instances"])
    assert resized[0, 1].tolist() == [46, 12, 2]  # moved with the image (2x)
    # a crop of the image's left 22 columns: points at x >= 22 leave it
    left = {k: (F.crop(v, 0, 0, 30, 22) if k == "image" else v) for k, v in s.items()}
    left["instances"] = {k: (F.crop(v, 0, 0, 30, 22) if k in ("boxes", "masks", "keypoints") else v)
                         for k, v in s["instances"].items()}
    out = SanitizeInstances(recompute_boxes=True)(left)
    kp = keypoints_xyv(out["instances"])[0]
    assert kp[0, 2] == 2 and kp[2, 2] == 1  # nose and right eye stay inside
    assert kp[1, 2] == 0 and kp[5, 2] == 0  # left eye (x 23) and shoulder (x 28) left the crop
    gone = {**left, "instances": {k: (F.crop(v, 0, 0, 30, 8) if k in ("boxes", "masks", "keypoints") else v)
                                  for k, v in s["instances"].items()}}
    out = SanitizeInstances(recompute_boxes=True)(gone)  # the person is cropped away entirely
    assert len(out["instances"]["labels"]) == 0 and out["instances"]["keypoints"].shape == (0, 17, 2)
    assert out["instances"]["keypoints_visible"].shape == (0, 17)


@needs_keypoint_transforms
@pytest.mark.shared_data
def test_coco_mini_person_keypoints(shared_data):
    ds = COCODataset(root=str(shared_data / "coco_mini"), split="val2017", keypoints=True)
    assert ds.class_names == ("background", "person")
    labelled = sum(int((keypoints_xyv(ds[i]["instances"])[..., 2] > 0).any(1).sum()) for i in range(len(ds)))
    assert labelled == 68  # the README's 68 val persons with keypoints


@needs_keypoint_transforms
def test_instance_folder_reads_an_optional_per_image_keypoint_file(tmp_path):
    from segzoo.data.instance_folder import InstanceFolderDataset
    from segzoo.errors import DataError

    (tmp_path / "images").mkdir()
    (tmp_path / "instances").mkdir()
    ids = np.zeros((20, 30), np.uint16)
    ids[2:10, 3:12], ids[12:18, 15:28] = 7, 3
    for name in ("a", "b"):
        Image.fromarray(np.full((20, 30, 3), 80, np.uint8)).save(tmp_path / "images" / f"{name}.png")
        Image.fromarray(ids).save(tmp_path / "instances" / f"{name}.png")
    (tmp_path / "instances" / "a.keypoints.json").write_text(json.dumps(
        {"7": [[4, 3, 2], [10, 3, 1]], "3": [[16, 13, 2], [26, 16, 0]]}))
    ds = InstanceFolderDataset(root=str(tmp_path), keypoint_names=["left_tip", "right_tip"], skeleton=[[0, 1]])
    assert ds.keypoint_flip == [1, 0] and ds.keypoint_sigmas == (0.05, 0.05) and ds.skeleton == ((0, 1),)
    kp = keypoints_xyv(ds[0]["instances"])  # instances in increasing id order: 3, then 7
    assert kp.tolist() == [[[16, 13, 2], [26, 16, 0]], [[4, 3, 2], [10, 3, 1]]]
    assert keypoints_xyv(ds[1]["instances"])[..., 2].sum() == 0  # no file: nothing labelled
    flipped = keypoints_xyv(_flip(ds[0], {"name": "random_flip", "p": 1.0})["instances"])
    assert flipped[1].tolist() == [[29 - 10, 3, 1], [29 - 4, 3, 2]]  # left and right tips swapped
    (tmp_path / "instances" / "b.keypoints.json").write_text(json.dumps({"7": [[1, 2]]}))
    with pytest.raises(DataError, match=r"b.keypoints.json: instance 7 needs 2"):
        ds[1]


@pytest.mark.parametrize("version, supported", [("0.23.0+cu128", False), ("0.24.0", True), ("0.29.1+cu130", True)])
def test_keypoint_data_needs_a_torchvision_that_leaves_cropped_keypoints_unclamped(monkeypatch, version, supported):
    """torchvision 0.23 clamps keypoints into a crop, so one that left it would stay labelled: the
    pipeline refuses it with the version to install."""
    import torchvision

    monkeypatch.setattr(torchvision, "__version__", version)
    instances = {"labels": torch.tensor([1]), "masks": torch.zeros(1, 8, 8, dtype=torch.bool)}
    keypoints = torch.tensor([[[1.0, 2.0, 2.0], [3.0, 4.0, 1.0]]])
    if supported:
        assert add_keypoints(instances, keypoints, [1, 0])["keypoints_visible"].tolist() == [[2, 1]]
    else:
        with pytest.raises(RuntimeError, match=r"keypoint data needs torchvision >= 0.24 .*this is torchvision 0\.23\.0\+cu128: upgrade"):
            add_keypoints(instances, keypoints, [1, 0])
