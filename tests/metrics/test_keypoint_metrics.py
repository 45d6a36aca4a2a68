"""Keypoint AP (OKS) of the instance evaluator: hand-computed OKS and pycocotools' own COCOeval on
the same hand-made case."""

import contextlib
import io
import math

import numpy as np
import pytest
import torch
from pycocotools.cocoeval import COCOeval

from segzoo.constants import COCO_PERSON_SIGMAS
from segzoo.evaluation.tables import format_instance_metrics
from segzoo.metrics.instance import InstanceEvaluator

THRESHOLDS = np.linspace(0.5, 0.95, 10)


def _oks(pred: torch.Tensor, gt: torch.Tensor, area: float, sigmas) -> float:
    """OKS by its definition over the ground truth's labelled keypoints."""
    vis = gt[:, 2] > 0
    d2 = ((pred[:, :2] - gt[:, :2]) ** 2).sum(1)
    k2 = (2 * torch.tensor(sigmas, dtype=torch.float64)) ** 2
    e = d2 / (2 * area * k2)
    return float(torch.exp(-e)[vis].mean())


def _case():
    gt = torch.zeros(1, 17, 3, dtype=torch.float64)
    gt[0, 0] = torch.tensor([30.0, 20.0, 2])   # nose
    gt[0, 5] = torch.tensor([22.0, 34.0, 2])   # left shoulder
    gt[0, 11] = torch.tensor([25.0, 50.0, 1])  # left hip, occluded but labelled
    pred = gt.clone()
    pred[0, 0, :2] += torch.tensor([2.0, 1.0])
    pred[0, 5, :2] += torch.tensor([-3.0, 2.0])
    pred[0, 11, :2] += torch.tensor([2.0, 3.0])
    pred[0, 1:5, :2] = torch.tensor([100.0, 100.0])  # unlabelled in the ground truth: not scored
    pred[..., 2] = 1
    return gt, pred


def test_keypoint_ap_matches_hand_computed_oks_and_pycocotools():
    gt, pred = _case()
    box = torch.tensor([[10.0, 10.0, 50.0, 60.0]])  # 40 x 50: area 2000 (no masks: the box's area)
    oks = _oks(pred[0], gt[0], 2000.0, COCO_PERSON_SIGMAS)
    assert 0.5 < oks < 0.95 and np.abs(THRESHOLDS - oks).min() > 0.01  # not on a threshold
    ev = InstanceEvaluator(["person"])
    ev.add_ground_truth(1, (80, 80), {"boxes": box, "labels": torch.tensor([1]), "keypoints": gt})
    ev.add_ground_truth(2, (80, 80), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                                      "keypoints": torch.zeros(0, 17, 3)})
    ev.add_prediction(1, {"boxes": box, "labels": torch.tensor([1]), "scores": torch.tensor([0.6]),
                          "keypoints": pred})
    # a more confident false positive on the image without people: precision 1/2 at full recall
    ev.add_prediction(2, {"boxes": box, "labels": torch.tensor([1]), "scores": torch.tensor([0.9]),
                          "keypoints": pred})
    m = ev.compute()
    passed = THRESHOLDS <= oks
    assert m["kp_AP"] == pytest.approx(0.5 * passed.mean(), abs=1e-6)
    assert m["kp_AP50"] == pytest.approx(0.5) and m["kp_AP75"] == pytest.approx(0.5 if oks >= 0.75 else 0.0)
    assert "mask_AP" not in m and m["bbox_AP"] == pytest.approx(0.5)  # boxes only: no masks predicted
    assert "kp " in format_instance_metrics(m)

    # pycocotools on the json the evaluator wrote, scored without segzoo
    coco = ev.ground_truth()
    dets = [{"image_id": r["image_id"], "category_id": r["category_id"], "keypoints": r["keypoints"],
             "score": r["score"]} for r in ev.results]
    with contextlib.redirect_stdout(io.StringIO()):
        ref = COCOeval(coco, coco.loadRes(dets), "keypoints")
        ref.evaluate(), ref.accumulate(), ref.summarize()
    assert [m["kp_AP"], m["kp_AP50"], m["kp_AP75"]] == pytest.approx(list(ref.stats[:3]))
    assert ref.ious[(1, 1)][0, 0] == pytest.approx(oks, abs=1e-9)


def test_keypoint_sigmas_are_configurable_and_required_for_other_skeletons():
    gt = torch.tensor([[[10.0, 10.0, 2], [20.0, 12.0, 2], [18.0, 25.0, 2], [8.0, 20.0, 2]]])
    pred = gt.clone()
    pred[0, :, 0] += 2.0
    box = torch.tensor([[5.0, 5.0, 25.0, 30.0]])  # area 500
    target = {"boxes": box, "labels": torch.tensor([1]), "keypoints": gt}
    out = {"boxes": box, "labels": torch.tensor([1]), "scores": torch.tensor([0.8]), "keypoints": pred}
    results = {}
    for sigma in (0.05, 0.2):
        ev = InstanceEvaluator(["square"], keypoint_sigmas=[sigma] * 4)
        ev.update([out], [1], targets=[target], image_sizes=[(40, 40)])
        results[sigma] = ev.compute()["kp_AP"]
        oks = math.exp(-4.0 / (2 * 500 * (2 * sigma) ** 2))
        assert results[sigma] == pytest.approx((THRESHOLDS <= oks).mean())
    assert results[0.2] > results[0.05]
    ev = InstanceEvaluator(["square"])
    ev.update([out], [1], targets=[target], image_sizes=[(40, 40)])
    with pytest.raises(ValueError, match="sigmas"):
        ev.compute()


def test_ground_truth_without_labelled_keypoints_is_ignored():
    gt, pred = _case()
    empty = torch.zeros(1, 17, 3, dtype=torch.float64)
    box = torch.tensor([[10.0, 10.0, 50.0, 60.0]])
    ev = InstanceEvaluator(["person"])
    ev.update([{"boxes": box, "labels": torch.tensor([1]), "scores": torch.tensor([0.9]), "keypoints": pred}],
              [1], targets=[{"boxes": box, "labels": torch.tensor([1]), "keypoints": empty}], image_sizes=[(80, 80)])
    ev.update([{"boxes": box, "labels": torch.tensor([1]), "scores": torch.tensor([0.5]), "keypoints": pred}],
              [2], targets=[{"boxes": box, "labels": torch.tensor([1]), "keypoints": gt}], image_sizes=[(80, 80)])
    # the unlabelled person's detection matches an ignored ground truth: no false positive
    assert ev.compute()["kp_AP50"] == pytest.approx(1.0)
