"""Per-class NMS in grouped calls (segzoo.models.roi_heads.postprocess) against torchvision's."""

from __future__ import annotations

import pytest
import torch
from helpers.nms_compare import assert_same_up_to_rounding, dense_candidates
from torchvision.ops import batched_nms
from torchvision.ops.boxes import _batched_nms_vanilla

import segzoo
from segzoo.bench.hostsync import OpCounter, count_detector
from segzoo.models.roi_heads.postprocess import grouped_batched_nms, offset_dtype


def candidates(n: int, num_classes: int, seed: int = 0, size: float = 800.0):
    """Random boxes clustered so that NMS suppresses many of them, with skewed class sizes."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(12, 2, generator=g) * size
    xy = centres[torch.randint(0, 12, (n,), generator=g)] + torch.randn(n, 2, generator=g) * 15
    wh = 20 + torch.rand(n, 2, generator=g) * 80
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1).clamp(0, size)
    labels = (torch.rand(n, generator=g) ** 2 * num_classes).long() + 1  # class 1 the most frequent
    return boxes, torch.rand(n, generator=g), labels


@pytest.mark.parametrize("n,num_classes,group", [
    (3000, 90, 500),   # many groups of several classes
    (3000, 3, 500),    # every class larger than a group: one class per call
    (1500, 20, 5000),  # everything in one call
    (1, 5, 10), (37, 1, 10),
])
def test_grouped_nms_keeps_what_torchvision_keeps_in_the_same_order(n, num_classes, group):
    boxes, scores, labels = candidates(n, num_classes, seed=n + num_classes)
    ref = _batched_nms_vanilla(boxes, scores, labels, 0.5)  # one NMS per class, no coordinate offsets
    assert torch.equal(ref, batched_nms(boxes, scores, labels, 0.5))
    out = grouped_batched_nms(boxes, scores, labels, 0.5, max_group_boxes=group)
    assert out.dtype == torch.int64 and set(out.tolist()) == set(ref.tolist())
    assert torch.equal(scores[out], scores[ref])  # by decreasing score (equal scores in any order)
    if n > 100:
        assert len(ref) < 0.9 * n  # the case suppresses: not a vacuous comparison


@pytest.mark.parametrize("group", [5000, 25000, 50000])  # 12, 62 and all 90 classes per call
def test_grouped_nms_with_many_classes_per_call_keeps_what_torchvision_keeps(group):
    # offsets up to 89 x 801 px: in float32 they flip a box at IoU 0.4999962 (group 25000), which
    # the comparison's 1e-6 tolerance rejects; in float64 only torchvision's own rounding remains
    boxes, scores, labels = dense_candidates()
    ref = _batched_nms_vanilla(boxes, scores, labels, 0.5)
    out = grouped_batched_nms(boxes, scores, labels, 0.5, max_group_boxes=group)
    assert assert_same_up_to_rounding(out, ref, boxes, scores, labels, 0.5) <= 2
    assert len(ref) < 0.9 * len(boxes)


def test_offsets_are_float64_except_on_mps():
    assert offset_dtype(torch.device("cpu")) == offset_dtype(torch.device("cuda", 0)) == torch.float64
    assert offset_dtype(torch.device("mps")) == torch.float32  # MPS has no float64


def test_nms_comparison_accepts_only_disagreements_at_the_threshold():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 3.0]])
    scores, labels = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 1, 2])
    both, extra = torch.tensor([0, 2]), torch.tensor([0, 1, 2])  # box 1: IoU exactly 0.5 with box 0
    assert assert_same_up_to_rounding(extra, both, boxes, scores, labels, 0.5) == 1
    with pytest.raises(AssertionError, match="box 1"):  # IoU 0.5 is far from a 0.3 threshold
        assert_same_up_to_rounding(extra, both, boxes, scores, labels, 0.3)


def test_grouped_nms_handles_no_boxes_and_rejects_bad_shapes():
    empty = torch.zeros(0, 4)
    assert grouped_batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).shape == (0,)
    boxes, scores, labels = candidates(10, 3)
    with pytest.raises(ValueError, match=r"boxes \(N, 4\)"):
        grouped_batched_nms(boxes[:, :3], scores, labels, 0.5)
    with pytest.raises(ValueError, match="idxs"):
        grouped_batched_nms(boxes, scores, labels[:4], 0.5)


def test_grouped_nms_calls_nms_once_per_group():
    boxes, scores, labels = candidates(3000, 90)
    counters = {}
    for name, fn in {"grouped": lambda: grouped_batched_nms(boxes, scores, labels, 0.5, max_group_boxes=1000),
                     "vanilla": lambda: _batched_nms_vanilla(boxes, scores, labels, 0.5)}.items():
        counters[name] = OpCounter()
        with torch.inference_mode(), counters[name]:
            fn()
    grouped, vanilla = counters["grouped"].counts["other"], counters["vanilla"].counts["other"]
    assert vanilla.syncs["nms"] == len(labels.unique()) > 50
    assert 3 <= grouped.syncs["nms"] <= 4  # 3000 boxes in groups of at most 1000 whole classes
    assert grouped.total_syncs <= grouped.syncs["nms"] + 2 < vanilla.total_syncs / 20  # + the class counts


@pytest.mark.parametrize("arch", ["maskrcnn", "keypointrcnn"])
def test_detectors_give_the_same_detections_with_grouped_and_torchvision_nms(arch):
    torch.manual_seed(0)
    kw = {"num_keypoints": 5, "keypoint_head_dim": 16, "keypoint_head_convs": 2} if arch == "keypointrcnn" \
        else {"mask_head_dim": 16}
    model = segzoo.build_model(arch, num_classes=30, backbone="resnet18", min_size=64, max_size=96,
                               fpn_channels=32, box_head_dim=64, box_score_thresh=0.0,
                               box_detections_per_img=50, **kw).eval()
    images = [torch.rand(3, 70, 90), torch.rand(3, 64, 64)]
    outs = {}
    for mode in ("torchvision", "grouped"):
        model.roi_heads.class_nms = mode
        model.roi_heads.nms_group_boxes = 700  # several groups at this size (29 classes x ~1000 proposals)
        with torch.inference_mode():
            outs[mode] = model(images)
    for ref, out in zip(outs["torchvision"], outs["grouped"]):
        assert len(ref["boxes"]) == 50
        assert set(ref) == set(out)
        for k in ref:
            assert torch.equal(ref[k], out[k]), k
    model.roi_heads.class_nms = "grouped"
    counts = count_detector(model, images[:1])["roi_heads.postprocess_detections"]
    model.roi_heads.class_nms = "torchvision"
    ref_counts = count_detector(model, images[:1])["roi_heads.postprocess_detections"]
    assert counts.total_syncs * 3 < ref_counts.total_syncs


def test_class_nms_mode_is_checked():
    with pytest.raises(ValueError, match="class_nms"):
        segzoo.build_model("maskrcnn", num_classes=3, backbone="resnet18", min_size=64, max_size=96,
                           fpn_channels=32, box_head_dim=64, mask_head_dim=16, class_nms="fast")
