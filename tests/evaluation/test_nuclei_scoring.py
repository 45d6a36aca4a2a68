"""The scorer's nuclei metrics (eval.nuclei_metrics) and contour decoding
(eval.instance_decoder: contour) on hand-made touching objects, for both tasks."""

import pytest
import torch
import torch.nn.functional as F

from segzoo.config.schema import EvalConfig
from segzoo.data.instances import instances_from_id_map
from segzoo.errors import ConfigError
from segzoo.evaluation.evaluator import Scorer


def touching():
    ids = torch.zeros(12, 20, dtype=torch.long)
    ids[2:10, 2:10], ids[2:10, 10:18] = 1, 2
    return ids, instances_from_id_map(ids, {1: 1, 2: 1})


def logits_of(labels, k):
    return 10 * F.one_hot(labels, k).permute(2, 0, 1).float()


def test_semantic_model_on_touching_objects_merges_them_and_the_scorer_says_so():
    ids, gt = touching()
    target = (ids > 0).long()
    scorer = Scorer(num_classes=2, ignore_index=255, instance=True, eval_cfg=EvalConfig(nuclei_metrics=True))
    scorer.add_semantic(logits_of(target, 2), target, gt, image_id=1)
    m = scorer.compute()
    assert m["fg_IoU"] == 1.0 and m["fg_Dice"] == 1.0 and m["fg_BIoU"] == 1.0
    assert m["dsb_mAP"] == 0.0 and m["merged"] == 2 and m["merged_frac"] == 1.0  # one blob for two
    assert m["num_objects"] == 2 and m["num_pred_objects"] == 1


def test_contour_decoder_separates_them_and_foreground_metrics_ignore_the_contour_class():
    ids, gt = touching()
    labels = (ids > 0).long()
    labels[2:10, 9:11] = 2  # predicted contour between the two
    target = labels.clone()
    cfg = EvalConfig(nuclei_metrics=True, instance_decoder="contour", connectivity=4)
    scorer = Scorer(num_classes=3, ignore_index=255, instance=True, eval_cfg=cfg, contour_class=2)
    assert scorer.things == [1]
    scorer.add_semantic(logits_of(labels, 3), target, gt, image_id=1)
    m = scorer.compute()
    assert m["dsb_mAP"] == 1.0 and m["merged"] == 0 and m["mask_AP"] == pytest.approx(1.0)
    assert m["fg_IoU"] == 1.0  # nucleus + contour against background
    with pytest.raises(ConfigError, match="no contour class"):
        Scorer(num_classes=3, ignore_index=255, eval_cfg=cfg)


def test_instance_model_detections_become_an_id_map_by_score_and_threshold():
    ids, gt = touching()
    masks = torch.stack([ids == 1, ids == 2, ids > 0]).float()[:, None]
    pred = {"boxes": torch.tensor([[2.0, 2, 10, 10], [10, 2, 18, 10], [2, 2, 18, 10]]),
            "labels": torch.tensor([1, 1, 1]), "scores": torch.tensor([0.9, 0.8, 0.3]), "masks": masks}
    scorer = Scorer(num_classes=2, ignore_index=255, instance=True, eval_cfg=EvalConfig(nuclei_metrics=True))
    scorer.add_instances(pred, (ids > 0).long(), gt, image_id=1)
    m = scorer.compute()  # the 0.3 blob is under score_threshold 0.5: not in the id map
    assert m["dsb_mAP"] == 1.0 and m["merged"] == 0 and m["num_pred_objects"] == 2 and m["fg_IoU"] == 1.0


def test_foreground_counts_round_trip_for_summing_across_processes():
    ids, gt = touching()
    target = (ids > 0).long()
    target[0, 0] = 255
    parts, whole = [], Scorer(num_classes=2, ignore_index=255, eval_cfg=EvalConfig(nuclei_metrics=True))
    for shift in (0, 3):
        labels = torch.roll(target.clamp(max=1), shift, 1)
        s = Scorer(num_classes=2, ignore_index=255, eval_cfg=EvalConfig(nuclei_metrics=True))
        s.add_semantic(logits_of(labels, 2), target)
        whole.add_semantic(logits_of(labels, 2), target)
        parts.append(s.counts())
    merged = Scorer(num_classes=2, ignore_index=255, eval_cfg=EvalConfig(nuclei_metrics=True))
    merged.load_counts(parts[0] + parts[1])
    assert merged.compute() == whole.compute() and 0 < whole.compute()["fg_IoU"] < 1
