"""Detector inference steps rewritten for the GPU, on the GPU: the grouped per-class NMS and the
keypoint decoding give torchvision's results there too (run by `make gpu-check`; skipped with
"no CUDA device" elsewhere, where tests/models/test_grouped_nms.py and test_keypoint_decode.py
check the same on the CPU)."""

from __future__ import annotations

import pytest
import torch
from helpers.keypoint_rois import rois_like
from helpers.nms_compare import assert_same_up_to_rounding, dense_candidates
from torchvision.models.detection.roi_heads import heatmaps_to_keypoints as tv_heatmaps_to_keypoints
from torchvision.ops import batched_nms

import segzoo
from segzoo.models.roi_heads.keypoint_decode import heatmaps_to_keypoints
from segzoo.models.roi_heads.postprocess import grouped_batched_nms

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]
DEV = torch.device("cuda")


def test_grouped_nms_on_the_gpu_keeps_torchvision_boxes():
    boxes, scores, labels = (t.to(DEV) for t in dense_candidates())  # 36,000: one NMS per class
    ref = batched_nms(boxes, scores, labels, 0.5)
    for group in (2500, 5000, 25000):
        out = grouped_batched_nms(boxes, scores, labels, 0.5, max_group_boxes=group)
        assert assert_same_up_to_rounding(out, ref, boxes, scores, labels, 0.5) <= 2, group
    assert len(ref) < 0.9 * len(boxes)


def test_keypoint_decoding_on_the_gpu_equals_torchvision():
    maps = torch.randn(40, 17, 56, 56, generator=torch.Generator().manual_seed(1)).to(DEV)
    rois = rois_like(40).to(DEV)  # 12 widths and 11 heights whose size correction CUDA rounds apart
    kp, scores = heatmaps_to_keypoints(maps, rois)
    ref_kp, ref_scores = tv_heatmaps_to_keypoints(maps, rois)
    assert kp.is_cuda
    assert torch.equal(scores, ref_scores), "heatmap maxima differ: a different argmax or resize"
    diff = (kp - ref_kp).abs().max().item()
    assert torch.equal(kp, ref_kp), f"keypoints differ by up to {diff:.3g} px (rounding of the size correction?)"


def test_keypointrcnn_on_the_gpu_takes_the_grouped_nms_and_matches_torchvision_nms():
    torch.manual_seed(0)
    model = segzoo.build_model("keypointrcnn", num_classes=20, num_keypoints=5, min_size=96, max_size=128,
                               box_score_thresh=0.0).eval().to(DEV)
    images = [torch.rand(3, 96, 128, device=DEV)]
    outs = {}
    for mode in ("auto", "torchvision"):
        model.roi_heads.class_nms = mode
        model.roi_heads.nms_group_boxes = 2000  # several groups: 19 classes x up to 1,000 proposals
        with torch.no_grad():
            (outs[mode],) = model(images)
    assert len(outs["auto"]["boxes"]) == 100
    for k in outs["auto"]:
        assert torch.equal(outs["auto"][k], outs["torchvision"][k]), k
