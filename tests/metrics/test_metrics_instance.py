"""COCO box/mask AP through pycocotools on hand-built cases and the nuclei fixture."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from segzoo.data import ShapesDataset
from segzoo.metrics.instance import InstanceEvaluator, decode_masks, encode_masks


def square(h, w, x1, y1, x2, y2):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y1:y2, x1:x2] = True
    return m


def target(boxes, labels, masks, iscrowd=None):
    t = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
         "labels": torch.tensor(labels, dtype=torch.int64),
         "masks": torch.stack(masks).to(torch.uint8) if masks else torch.zeros(0, 64, 64, dtype=torch.uint8)}
    if iscrowd is not None:
        t["iscrowd"] = torch.tensor(iscrowd)
    return t


def prediction(boxes, labels, scores, masks, size=(64, 64)):
    m = torch.stack(masks).float().unsqueeze(1) if masks else torch.zeros(0, 1, *size)
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "scores": torch.tensor(scores, dtype=torch.float32), "masks": m}


def test_perfect_predictions_on_shapes_score_ap_one():
    ds = ShapesDataset(split="val", num_images=6, size=(64, 64), with_instances=True)
    ev = InstanceEvaluator(ds.class_names[1:])
    for i in range(len(ds)):
        inst = ds[i]["instances"]
        n = len(inst["labels"])
        pred = {"boxes": inst["boxes"], "labels": inst["labels"], "scores": torch.linspace(1, 0.5, n),
                "masks": inst["masks"].float().unsqueeze(1)}
        ev.update([pred], [i], targets=[inst], image_sizes=[(64, 64)])
    m = ev.compute()
    for prefix in ("bbox", "mask"):
        assert m[f"{prefix}_AP"] == pytest.approx(1.0) and m[f"{prefix}_AP50"] == pytest.approx(1.0)
        assert set(m[f"{prefix}_AP_per_class"]) == {"circle", "square", "triangle"}
    assert m["num_images"] == 6 and "Average Precision" in m["summary"]["mask"]


def test_shifted_box_passes_iou_thresholds_up_to_its_iou():
    # a 10x10 object; the prediction is shifted 2 px right: IoU = 8*10 / (12*10) = 0.667,
    # a match at IoU thresholds 0.50, 0.55, 0.60, 0.65 and a miss at 0.70 ... 0.95
    gt = target([[10, 10, 20, 20]], [1], [square(64, 64, 10, 10, 20, 20)])
    pred = prediction([[12, 10, 22, 20]], [1], [0.9], [square(64, 64, 12, 10, 22, 20)])
    ev = InstanceEvaluator(["thing"])
    ev.update([pred], [1], targets=[gt], image_sizes=[(64, 64)])
    m = ev.compute()
    for prefix in ("bbox", "mask"):
        assert m[f"{prefix}_AP50"] == pytest.approx(1.0)
        assert m[f"{prefix}_AP75"] == pytest.approx(0.0)
        assert m[f"{prefix}_AP"] == pytest.approx(0.4)
        assert m[f"{prefix}_APs"] == pytest.approx(0.4)  # area 100 < 32^2: a small object
        assert math.isnan(m[f"{prefix}_APm"]) and math.isnan(m[f"{prefix}_APl"])


def test_empty_predictions_score_zero_and_images_without_gt_are_fine():
    gt = target([[10, 10, 20, 20]], [1], [square(64, 64, 10, 10, 20, 20)])
    ev = InstanceEvaluator(["thing"])
    ev.update([prediction([], [], [], [])], [1], targets=[gt], image_sizes=[(64, 64)])
    assert ev.compute()["mask_AP"] == 0.0

    def run(fp_score):
        ev = InstanceEvaluator(["thing"])
        ev.update([prediction([[10, 10, 20, 20]], [1], [0.8], [square(64, 64, 10, 10, 20, 20)]),
                   prediction([[0, 0, 8, 8]], [1], [fp_score], [square(64, 64, 0, 0, 8, 8)])],
                  [1, 2], targets=[gt, target([], [], [])], image_sizes=[(64, 64), (64, 64)])
        return ev.compute()

    assert run(0.5)["mask_AP"] == pytest.approx(1.0)  # the false positive ranks below the match
    assert run(0.9)["mask_AP"] == pytest.approx(0.5)  # ... or above it: precision 1/2 at recall 1
    only_empty = InstanceEvaluator(["thing"])
    only_empty.update([prediction([], [], [], [])], [7], targets=[target([], [], [])], image_sizes=[(64, 64)])
    assert math.isnan(only_empty.compute()["bbox_AP"])  # nothing to score


def test_crowd_regions_are_neither_true_nor_false_positives():
    obj, crowd = square(64, 64, 5, 5, 15, 15), square(64, 64, 30, 30, 60, 60)
    pred = prediction([[5, 5, 15, 15], [30, 30, 60, 60]], [1, 1], [0.6, 0.9], [obj, crowd])

    def run(iscrowd):
        ev = InstanceEvaluator(["thing"])
        gt = target([[5, 5, 15, 15], [30, 30, 60, 60]], [1, 1], [obj, crowd], iscrowd=[0, iscrowd])
        ev.update([pred], [1], targets=[gt], image_sizes=[(64, 64)])
        return ev.compute()

    assert run(1)["mask_AP"] == pytest.approx(1.0) and run(1)["bbox_AP"] == pytest.approx(1.0)
    assert run(0)["mask_AP"] == pytest.approx(1.0)  # both matched when it is a normal object
    # a detection on a crowd region that ranks first would otherwise be a false positive:
    ev = InstanceEvaluator(["thing"])
    gt = target([[5, 5, 15, 15]], [1], [obj])
    ev.update([pred], [1], targets=[gt], image_sizes=[(64, 64)])
    assert ev.compute()["mask_AP"] == pytest.approx(0.5)


def test_per_class_ap_and_category_mapping_and_results_json(tmp_path):
    a, b = square(64, 64, 2, 2, 20, 20), square(64, 64, 30, 30, 50, 50)
    gt = target([[2, 2, 20, 20], [30, 30, 50, 50]], [1, 2], [a, b])
    pred = prediction([[2, 2, 20, 20], [30, 30, 50, 50]], [1, 1], [0.9, 0.8], [a, b])  # b mislabelled
    cats = [{"id": 7, "name": "cat"}, {"id": 12, "name": "dog"}]
    ev = InstanceEvaluator(cats, label_to_category={1: 7, 2: 12})
    ev.update([pred], [3], targets=[gt], image_sizes=[(64, 64)])
    m = ev.compute()
    assert m["mask_AP_per_class"] == {"cat": pytest.approx(1.0), "dog": 0.0}
    assert m["mask_AP"] == pytest.approx(0.5)
    res = json.loads(ev.write_results(tmp_path / "results.json").read_text())
    assert {r["category_id"] for r in res} == {7} and res[0]["bbox"] == [2.0, 2.0, 18.0, 18.0]
    assert isinstance(res[0]["segmentation"]["counts"], str)
    # the files are standard COCO: pycocotools reads them back to the same AP
    ev.write_ground_truth(tmp_path / "gt.json")
    again = InstanceEvaluator.from_coco(tmp_path / "gt.json", label_to_category={1: 7, 2: 12})
    again.update([pred], [3])
    assert again.compute()["mask_AP"] == pytest.approx(0.5)
    coco = COCO(str(tmp_path / "gt.json"))
    assert len(coco.loadRes(str(tmp_path / "results.json")).anns) == 2


def test_bad_predictions_are_refused():
    ev = InstanceEvaluator(["thing"])
    with pytest.raises(ValueError, match="masks are \\(32, 32\\) but the image is \\(64, 64\\)"):
        ev.add_prediction(1, prediction([[0, 0, 4, 4]], [1], [1.0], [square(32, 32, 0, 0, 4, 4)]), (64, 64))
    with pytest.raises(ValueError, match="no 'masks'"):
        ev.add_prediction(1, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0), "scores": torch.zeros(0)})


@pytest.mark.shared_data
def test_nuclei_masks_round_trip_through_rle_and_score(shared_data):
    inst = np.array(Image.open(shared_data / "nuclei" / "instances.png")).astype(np.int64)
    ids = np.unique(inst)[1:]
    assert len(ids) == 125
    masks = torch.from_numpy(inst[None] == ids[:, None, None])
    rles = encode_masks(masks)
    assert torch.equal(decode_masks(rles), masks)
    assert [r["size"] for r in rles[:1]] == [[512, 512]]
    from pycocotools import mask as mask_utils
    areas = mask_utils.area([{"size": r["size"], "counts": r["counts"].encode()} for r in rles])
    assert areas.tolist() == masks.sum((1, 2)).tolist()
    # perfect predictions of all 125 nuclei: COCO keeps the 100 best per image, so recall stops
    # at 100/125 = 0.8 and AP = precision 1 over the recall thresholds 0, 0.01, ..., 0.8
    boxes = []
    for m in masks:
        yy, xx = torch.nonzero(m, as_tuple=True)
        boxes.append([xx.min(), yy.min(), xx.max() + 1, yy.max() + 1])
    t = {"boxes": torch.tensor(boxes).float(), "labels": torch.ones(125, dtype=torch.int64), "masks": masks}
    p = {**t, "scores": torch.linspace(1, 0.1, 125)}
    ev = InstanceEvaluator(["nucleus"])
    ev.update([p], [1], targets=[t], image_sizes=[(512, 512)])
    m = ev.compute()
    assert m["mask_AP"] == pytest.approx(81 / 101, abs=1 / 101 + 1e-9)
    assert m["mask_AP"] == pytest.approx(m["bbox_AP"])


@pytest.mark.shared_data
def test_coco128_json_ground_truth_with_the_dataset_label_mapping(shared_data):
    """Ground truth from the real COCO json; predictions = the reader's own (non-crowd) targets,
    mapped back to category ids: AP 1.0 proves reader, label mapping and RLE path agree."""
    from segzoo.data import COCODataset

    ds = COCODataset(root=str(shared_data / "coco128"), split="train2017", max_images=16)
    ev = InstanceEvaluator.from_coco(shared_data / "coco128" / "annotations" / "instances_train2017.json",
                                     label_to_category=ds.label_to_category)
    for i in range(len(ds)):
        s = ds.load(i)
        inst = s["instances"]
        keep = inst["iscrowd"] == 0
        n = int(keep.sum())
        ev.add_prediction(s["meta"]["image_id"], {
            "boxes": inst["boxes"][keep], "labels": inst["labels"][keep], "scores": torch.linspace(1, 0.5, n),
            "masks": inst["masks"][keep].bool()})
    m = ev.compute()
    assert m["num_images"] == 16
    assert m["bbox_AP"] == pytest.approx(1.0) and m["mask_AP"] == pytest.approx(1.0)
    assert m["mask_AP_per_class"]["person"] == pytest.approx(1.0)
