"""Semantic metrics: hand-computed cases, and randomised checks against straightforward reference
implementations written here."""

import math

import numpy as np
import pytest
import torch

from segzoo.metrics import (
    BoundaryIoU,
    ConfusionMatrix,
    boundary_dilation,
    mask_boundary,
    metrics_from_confusion,
)

IGNORE = 255


def reference_metrics(preds, targets, k, ignore=IGNORE):
    """mmsegmentation's definitions, class by class from the pixels (no confusion matrix)."""
    p = np.concatenate([x.ravel() for x in preds])
    t = np.concatenate([x.ravel() for x in targets])
    keep = t != ignore
    p, t = p[keep], t[keep]
    out = {"IoU": [], "acc": [], "dice": []}
    weights = []
    for c in range(k):
        inter = np.sum((p == c) & (t == c))
        area_p, area_t = np.sum(p == c), np.sum(t == c)
        union = area_p + area_t - inter
        out["IoU"].append(inter / union if union else math.nan)
        out["acc"].append(inter / area_t if area_t else math.nan)
        out["dice"].append(2 * inter / (area_p + area_t) if area_p + area_t else math.nan)
        weights.append(area_t / t.size)
    out["pixel_acc"] = np.mean(p == t)
    out["mIoU"] = np.nanmean(out["IoU"])
    out["mean_acc"] = np.nanmean(out["acc"])
    out["mDice"] = np.nanmean(out["dice"])
    out["fwIoU"] = sum(w * i for w, i in zip(weights, out["IoU"]) if w > 0)
    return out


def assert_close(a, b):
    if isinstance(b, float) and math.isnan(b):
        assert math.isnan(a)
    else:
        assert a == pytest.approx(b, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_randomised_against_reference_with_ignored_pixels(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    shape = (int(rng.integers(3, 12)), int(rng.integers(3, 12)))
    preds, targets = [], []
    for _ in range(int(rng.integers(1, 5))):
        # restricted value ranges so some classes are missing from gt and/or prediction
        t = rng.integers(0, max(1, k - 1), shape)
        t[rng.random(shape) < 0.2] = IGNORE
        p = np.where(rng.random(shape) < 0.5, t, rng.integers(0, k, shape))
        p[p == IGNORE] = 0
        if seed % 2:
            p[p == k - 2] = 0  # a class in gt that is never predicted
        preds.append(p)
        targets.append(t)
    cm = ConfusionMatrix(k, IGNORE)
    for p, t in zip(preds, targets):
        cm.update(torch.from_numpy(p), torch.from_numpy(t))
    got = cm.compute()
    ref = reference_metrics(preds, targets, k)
    for key in ("pixel_acc", "mIoU", "mean_acc", "mDice", "fwIoU"):
        assert_close(got[key], float(ref[key]))
    for key in ("IoU", "acc", "dice"):
        for c in range(k):
            assert_close(got[key][str(c)], float(ref[key][c]))
    assert math.isnan(got["IoU"][str(k - 1)]) or (np.concatenate(preds) == k - 1).any()


def test_fwiou_and_dice_hand_computed():
    # gt: 3 px of class 0, 1 px of class 1; pred gets one class-0 pixel wrong
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 0, 1]))
    m = cm.compute()
    # IoU0 = 2/3, IoU1 = 1/2; fwIoU = 3/4 * 2/3 + 1/4 * 1/2
    assert m["fwIoU"] == pytest.approx(0.75 * 2 / 3 + 0.25 * 0.5)
    # dice0 = 2*2/(3+2) = 0.8, dice1 = 2*1/(1+2) = 2/3, class 2 absent -> NaN and left out
    assert m["dice"]["0"] == pytest.approx(0.8) and m["dice"]["1"] == pytest.approx(2 / 3)
    assert math.isnan(m["dice"]["2"])
    assert m["mDice"] == pytest.approx((0.8 + 2 / 3) / 2)


# ----------------------------------------------------------------------------- boundary IoU
def reference_boundary(mask: np.ndarray, ratio: float = 0.02) -> np.ndarray:
    """detectron2's mask_to_boundary: 1-px zero border, d iterations of a 3x3 erosion."""
    h, w = mask.shape
    d = max(1, int(round(ratio * np.sqrt(h**2 + w**2))))
    m = np.pad(mask.astype(np.uint8), 1)
    for _ in range(d):
        # 3x3 erosion; the padded frame's own outside does not erode (cv2's default border)
        p = np.pad(m, 1, constant_values=1)
        m = np.min([p[1 + dy:p.shape[0] - 1 + dy, 1 + dx:p.shape[1] - 1 + dx]
                    for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    return mask.astype(bool) & ~m[1:-1, 1:-1].astype(bool)


def test_mask_boundary_matches_iterated_erosion_and_border_rule():
    rng = np.random.default_rng(0)
    for h, w in [(9, 13), (40, 31), (64, 64), (120, 90)]:
        mask = rng.random((h, w)) < 0.7
        mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
        d = boundary_dilation(h, w)
        got = mask_boundary(torch.from_numpy(mask), d).numpy()
        np.testing.assert_array_equal(got, reference_boundary(mask))
    full = torch.ones(50, 50, dtype=torch.bool)  # a full-image mask: its boundary is the border band
    b = mask_boundary(full, boundary_dilation(50, 50))
    assert boundary_dilation(50, 50) == 1
    assert b.sum() == 50 * 50 - 48 * 48 and not b[1:-1, 1:-1].any()


def reference_biou(preds, targets, k, ignore=IGNORE):
    inter, union = np.zeros(k), np.zeros(k)
    for p, t in zip(preds, targets):
        valid = t != ignore
        for c in range(k):
            gb, pb = reference_boundary(t == c), reference_boundary(p == c)
            inter[c] += np.sum(gb & pb & valid)
            union[c] += np.sum((gb | pb) & valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


@pytest.mark.parametrize("seed", range(3))
def test_boundary_iou_randomised_against_reference(seed):
    rng = np.random.default_rng(seed + 10)
    k, (h, w) = 4, (int(rng.integers(20, 70)), int(rng.integers(20, 70)))
    preds, targets = [], []
    for _ in range(3):
        # blocky maps (real boundaries) with noise and ignored pixels; class 3 never appears
        t = np.kron(rng.integers(0, 3, (h // 8 + 1, w // 8 + 1)), np.ones((8, 8), int))[:h, :w]
        p = t.copy()
        p[rng.random((h, w)) < 0.1] = rng.integers(0, 3)
        p = np.roll(p, int(rng.integers(-3, 4)), axis=1)
        t[rng.random((h, w)) < 0.05] = IGNORE
        preds.append(p)
        targets.append(t)
    metric = BoundaryIoU(k, IGNORE)
    metric.update(torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(targets)))
    got = metric.compute()
    ref = reference_biou(preds, targets, k)
    for c in range(k):
        assert_close(got["bIoU"][str(c)], float(ref[c]))
    assert math.isnan(got["bIoU"]["3"])
    assert got["mBIoU"] == pytest.approx(float(np.nanmean(ref)))
    streamed = BoundaryIoU(k, IGNORE)  # image by image
    for p, t in zip(preds, targets):
        streamed.update(torch.from_numpy(p), torch.from_numpy(t))
    assert torch.equal(streamed.intersection, metric.intersection)
    assert torch.equal(streamed.union, metric.union)


def test_boundary_iou_hand_case_shifted_square():
    # 50x50 image: d = round(0.02 * 70.7) = 1; a 10x10 square shifted right by one pixel
    t = torch.zeros(50, 50, dtype=torch.long)
    t[10:20, 10:20] = 1
    p = torch.roll(t, 1, dims=1)
    m = BoundaryIoU(2)
    m.update(p, t)
    # ring of a 10x10 square = 36 px; the rings overlap only on the top and bottom rows (9 px each):
    # each square's side columns lie inside the other square
    inter = 18
    assert m.compute()["bIoU"]["1"] == pytest.approx(inter / (36 + 36 - inter))
    perfect = BoundaryIoU(2)
    perfect.update(t, t)
    assert perfect.compute()["mBIoU"] == 1.0


# ----------------------------------------------------------------------------- confusion matrix
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
