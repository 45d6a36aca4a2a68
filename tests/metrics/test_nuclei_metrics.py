"""The nuclei metrics (DSB 2018 mAP, merged objects) on hand-made id maps, and the contour
decoding that separates touching objects."""

import numpy as np
import pytest
import torch

from segzoo.metrics.cross_task import contour_to_instances, semantic_to_instances
from segzoo.metrics.nuclei import (
    DSB_THRESHOLDS,
    NucleiScore,
    dsb_image_ap,
    gt_id_map,
    id_map_from_masks,
    iou_matrix,
    merged_instances,
)


def two_touching():
    gt = np.zeros((10, 20), dtype=np.int64)
    gt[2:8, 2:10] = 1   # 48 px
    gt[2:8, 10:18] = 2  # 48 px, touching the first along a column
    return gt


def test_dsb_ap_perfect_merged_and_missing_cases():
    gt = two_touching()
    assert DSB_THRESHOLDS[0] == 0.5 and DSB_THRESHOLDS[-1] == 0.95 and len(DSB_THRESHOLDS) == 10
    assert dsb_image_ap(gt * 5, gt) == 1.0  # ids need not match, only the objects
    merged = (gt > 0).astype(np.int64)  # one blob over both: IoU 0.5 with each, never > 0.5
    assert iou_matrix(merged, gt).tolist() == [[0.5], [0.5]]
    assert dsb_image_ap(merged, gt) == 0.0  # TP 0, FP 1, FN 2 at every threshold
    one = np.where(gt == 1, 1, 0)  # finds one object exactly, misses the other: 1 / (1 + 0 + 1)
    assert dsb_image_ap(one, gt) == pytest.approx(0.5)
    assert dsb_image_ap(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    assert dsb_image_ap(one, np.zeros_like(gt)) == 0.0


def test_dsb_ap_counts_thresholds_by_iou():
    gt = np.zeros((10, 10), dtype=np.int64)
    gt[0:10, 0:10] = 1
    pred = np.zeros_like(gt)
    pred[0:10, 0:7] = 1  # IoU 0.7: a match at 0.50..0.65 (4 thresholds), not from 0.70 (strictly >)
    assert dsb_image_ap(pred, gt) == pytest.approx(4 / 10)


def test_merged_counts_objects_whose_best_prediction_covers_a_neighbour():
    gt = two_touching()
    assert merged_instances((gt > 0).astype(int), gt) == 2
    assert merged_instances(gt, gt) == 0
    sliver = gt.copy()
    sliver[2:8, 10] = 1  # prediction 1 takes one column (6 of 48 px) of object 2: not "covering" it
    assert merged_instances(sliver, gt) == 0
    assert merged_instances(np.zeros_like(gt), gt) == 0  # missed objects are not merged


def test_score_accumulates_images_and_merges_process_states():
    gt = two_touching()
    a, b = NucleiScore(), NucleiScore()
    assert a.update(gt, gt) == 1.0
    assert b.update((gt > 0).astype(int), gt) == 0.0
    both = NucleiScore()
    both.merge([a.state(), b.state()])
    out = both.compute()
    assert out == {"dsb_mAP": 0.5, "merged": 2, "merged_frac": 0.5, "num_objects": 4, "num_pred_objects": 3}
    assert NucleiScore().compute()["dsb_mAP"] is None


def test_id_maps_from_masks_paste_by_score_and_skip_crowd():
    masks = torch.zeros(3, 4, 4)
    masks[0, :2] = 0.9   # score 0.2
    masks[1, 1:3] = 0.8  # score 0.9: pasted first, keeps row 1
    masks[2, 3] = 0.4    # below the mask threshold: empty, takes no id
    ids = id_map_from_masks(masks, torch.tensor([0.2, 0.9, 0.95]))
    assert ids[:, 0].tolist() == [2, 1, 1, 0]
    assert id_map_from_masks(masks, [0.2, 0.9, 0.95], score_threshold=0.5)[:, 0].tolist() == [0, 1, 1, 0]
    inst = {"masks": torch.stack([masks[0] > 0.5, masks[1] > 0.5]), "iscrowd": torch.tensor([0, 1])}
    assert gt_id_map(inst, (4, 4))[:, 0].tolist() == [1, 1, 0, 0]
    assert gt_id_map({"masks": torch.zeros(0, 4, 4)}, (4, 4)).sum() == 0
    with pytest.raises(ValueError, match="scores for"):
        id_map_from_masks(masks, [0.5])


def probs_of(labels, k):
    return torch.nn.functional.one_hot(torch.as_tensor(labels).long(), k).permute(2, 0, 1).float() * 0.9 + 0.1 / k


def test_contour_decoding_separates_what_components_merge():
    gt = two_touching()
    labels = np.where(gt > 0, 1, 0)
    labels[2:8, 9:11] = 2  # the predicted contour between the two objects
    labels[2, 2:18] = 2    # and along the top border
    probs = probs_of(labels, 3)
    # the nucleus map (contour counted as nucleus) as connected components: one merged blob
    plain = semantic_to_instances(probs_of(labels > 0, 2), connectivity=4)
    assert len(plain["masks"]) == 1 and merged_instances(id_map_from_masks(plain["masks"]), gt) == 2
    split = contour_to_instances(probs, 2, connectivity=4)
    assert split["labels"].tolist() == [1, 1]
    ids = id_map_from_masks(split["masks"], split["scores"])
    assert merged_instances(ids, gt) == 0
    assert dsb_image_ap(ids, gt) == 1.0  # the contour pixels grew back into their objects
    assert split["boxes"].tolist() in ([[2, 2, 10, 8], [10, 2, 18, 8]], [[10, 2, 18, 8], [2, 2, 10, 8]])
    with pytest.raises(ValueError, match="contour_class"):
        contour_to_instances(probs, 3)
    with pytest.raises(ValueError, match="cannot also be an object class"):
        contour_to_instances(probs, 2, thing_classes=[1, 2])
