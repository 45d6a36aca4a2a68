"""Compare two per-class NMS results that may differ only by the rounding of IoUs at the threshold
(segzoo.models.roi_heads.postprocess computes them in float64, torchvision in float32)."""

from __future__ import annotations

import torch
from torchvision.ops import box_iou


def dense_candidates(proposals: int = 400, num_classes: int = 90):
    """Every proposal a candidate in every class, as with box_score_thresh=0: the GPU check's case."""
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(proposals, 1, 2, generator=g) * 600
    boxes = (torch.cat([xy, xy + 20 + torch.rand(proposals, 1, 2, generator=g) * 200], -1)
             + torch.randn(proposals, num_classes, 4, generator=g) * 4).reshape(-1, 4).clamp(0, 800)
    return boxes, torch.rand(len(boxes), generator=g), torch.arange(1, num_classes + 1).repeat(proposals)


def assert_same_up_to_rounding(out, ref, boxes, scores, labels, iou_threshold, tol=1e-6):
    """Assert ``out`` and ``ref`` (kept indices, by decreasing score) keep the same boxes, except
    boxes whose float64 IoU with a higher-scoring box of their class kept by either lies within
    ``tol`` of ``iou_threshold``, and boxes that such a box overlaps above the threshold (a flip
    there changes what it suppresses). Returns the number of boxes that differ."""
    out_set, ref_set = set(out.tolist()), set(ref.tolist())
    diff = sorted(out_set ^ ref_set)
    kept = torch.tensor(sorted(out_set | ref_set), dtype=torch.int64, device=boxes.device)
    b64 = boxes.double()
    for i in diff:
        rivals = kept[(labels[kept] == labels[i]) & (scores[kept] > scores[i])]
        ious = box_iou(b64[i:i + 1], b64[rivals])[0] if len(rivals) else torch.zeros(0, dtype=torch.float64)
        near = bool(((ious - iou_threshold).abs() < tol).any())
        others = torch.tensor([j for j in diff if j != i and labels[j] == labels[i]], dtype=torch.int64,
                              device=boxes.device)
        cascade = len(others) and bool((box_iou(b64[i:i + 1], b64[others])[0] > iou_threshold).any())
        assert near or cascade, (f"box {i} (class {labels[i].item()}, score {scores[i].item():.6f}) is kept by "
                                 f"{'out' if i in out_set else 'ref'} only; its largest IoU with a kept "
                                 f"higher-scoring box of its class is {ious.max().item() if len(ious) else 0:.6f}, "
                                 f"not within {tol} of {iou_threshold}")
    both_out = torch.tensor([i for i in out.tolist() if i in ref_set], dtype=torch.int64, device=scores.device)
    both_ref = torch.tensor([i for i in ref.tolist() if i in out_set], dtype=torch.int64, device=scores.device)
    assert torch.equal(scores[both_out], scores[both_ref]), "boxes kept by both are not in the same order"
    return len(diff)
