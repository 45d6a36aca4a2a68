import math

import pytest
import torch

from segzoo.metrics import ConfusionMatrix, metrics_from_confusion


def test_hand_computed_confusion_matrix_with_ignore_and_absent_class():
    # 4 classes; class 3 appears in neither target nor prediction
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 3, 0]])  # predictions on ignored pixels never count
    cm = ConfusionMatrix(4, ignore_index=255)
    cm.update(pred, target)
    expected = torch.tensor([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(cm.matrix, expected)
    m = cm.compute(["a", "b", "c", "d"])
    assert m["pixel_acc"] == pytest.approx(4 / 6)
    # IoU: a 1/(2+2-1)=1/3, b 2/(2+3-2)=2/3, c 1/(2+1-1)=1/2, d undefined
    assert m["IoU"]["a"] == pytest.approx(1 / 3)
    assert m["IoU"]["b"] == pytest.approx(2 / 3)
    assert m["IoU"]["c"] == pytest.approx(1 / 2)
    assert math.isnan(m["IoU"]["d"]) and math.isnan(m["acc"]["d"])
    assert m["mIoU"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert m["mean_acc"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)


def test_predicted_but_absent_class_counts_as_zero_iou():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 2, 1]), torch.tensor([0, 1, 1]))
    m = cm.compute()
    assert m["IoU"]["2"] == 0.0 and math.isnan(m["acc"]["2"])
    assert m["mIoU"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_streaming_equals_one_shot_and_dataset_wide_not_per_image():
    g = torch.Generator().manual_seed(0)
    preds = torch.randint(0, 5, (6, 9, 11), generator=g)
    targets = torch.randint(0, 6, (6, 9, 11), generator=g)
    targets[targets == 5] = 255
    streamed, whole = ConfusionMatrix(5), ConfusionMatrix(5)
    for p, t in zip(preds, targets):
        streamed.update(p, t)
    whole.update(preds, targets)
    assert torch.equal(streamed.matrix, whole.matrix)
    assert streamed.matrix.sum() == (targets != 255).sum()


def test_perfect_prediction_and_all_ignored():
    cm = ConfusionMatrix(3)
    t = torch.tensor([[0, 1], [2, 2]])
    cm.update(t.clone(), t)
    m = cm.compute()
    assert m["mIoU"] == 1.0 and m["pixel_acc"] == 1.0
    empty = ConfusionMatrix(3)
    empty.update(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 255))
    assert math.isnan(empty.compute()["mIoU"])


def test_bad_labels_are_refused():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"target values \[7\]"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="predictions"):
        cm.update(torch.tensor([0, 3]), torch.tensor([0, 1]))


def test_metrics_from_confusion_checks_names():
    with pytest.raises(ValueError, match="class names"):
        metrics_from_confusion(torch.eye(3), ["a"])
