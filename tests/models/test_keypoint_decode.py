"""Keypoint decoding from heatmaps (segzoo.models.roi_heads.keypoint_decode) against torchvision's."""

from __future__ import annotations

import pytest
import torch
from helpers.keypoint_rois import rois_like
from torchvision.models.detection.roi_heads import RoIHeads, keypointrcnn_inference
from torchvision.models.detection.roi_heads import heatmaps_to_keypoints as tv_heatmaps_to_keypoints

import segzoo
from segzoo.bench.hostsync import OpCounter
from segzoo.models.roi_heads.keypoint_decode import heatmaps_to_keypoints, keypoints_from_heatmaps


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_heatmaps_to_keypoints_equals_torchvision_bit_for_bit(dtype):
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(40, 17, 56, 56, generator=g).to(dtype)
    maps[10, 3] = 0.0  # a flat heatmap: ties everywhere, the first maximum wins on both sides
    rois = rois_like(40)
    ref_kp, ref_scores = tv_heatmaps_to_keypoints(maps, rois)
    kp, scores = heatmaps_to_keypoints(maps, rois)
    assert kp.shape == (40, 17, 3) and scores.shape == (40, 17)
    assert kp.dtype == ref_kp.dtype == torch.float32 and scores.dtype == ref_scores.dtype == torch.float32
    assert torch.equal(kp, ref_kp) and torch.equal(scores, ref_scores)
    inside = (kp[..., 0] >= rois[:, None, 0]) & (kp[..., 0] <= rois[:, None, 0] + (rois[:, None, 2] - rois[:, None, 0]).clamp(min=1))
    assert bool(inside.all()) and kp[..., :2].std() > 10  # keypoints inside their boxes, spread out


def test_keypoints_from_heatmaps_per_image_with_one_sync_each_and_empty_images():
    g = torch.Generator().manual_seed(2)
    boxes = [rois_like(7, seed=3), rois_like(0), rois_like(12, seed=4)]
    maps = torch.randn(19, 5, 56, 56, generator=g)
    counter = OpCounter()
    with torch.inference_mode(), counter:
        kps, scores = keypoints_from_heatmaps(maps, boxes)
    ref_kps, ref_scores = keypointrcnn_inference(maps, boxes)
    assert [k.shape for k in kps] == [(7, 5, 3), (0, 5, 3), (12, 5, 3)]
    for a, b, c, d in zip(kps, ref_kps, scores, ref_scores):
        assert torch.equal(a, b) and torch.equal(c, d)
    assert counter.counts["other"].total_syncs == 2  # one per non-empty image (torchvision: 2 per RoI)


def test_heatmaps_to_keypoints_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"rois \(N, 4\)"):
        heatmaps_to_keypoints(torch.zeros(3, 5, 56, 56), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"maps \(N, K, M, M\)"):
        heatmaps_to_keypoints(torch.zeros(3, 56, 56), torch.zeros(3, 4))


def test_keypointrcnn_heads_give_torchvision_heads_outputs():
    torch.manual_seed(0)
    model = segzoo.build_model("keypointrcnn", num_classes=3, num_keypoints=5, backbone="resnet18", min_size=64,
                               max_size=96, fpn_channels=32, box_head_dim=64, keypoint_head_dim=16,
                               keypoint_head_convs=2, box_score_thresh=0.0, box_detections_per_img=40).eval()
    images = [torch.rand(3, 70, 90), torch.rand(3, 64, 64)]
    with torch.inference_mode():
        image_list, _ = model.transform(images)
        features = model.features(image_list.tensors)
        proposals, _ = model.rpn(image_list, features)
        ours, _ = model.roi_heads(features, proposals, image_list.image_sizes)
        ref, _ = RoIHeads.forward(model.roi_heads, features, proposals, image_list.image_sizes)
    for r, o in zip(ref, ours):
        assert len(r["boxes"]) == 40 and set(r) == set(o)
        for k in r:
            assert torch.equal(r[k], o[k]), k
