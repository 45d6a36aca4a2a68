"""segzoo bench's Keypoint R-CNN peer: torchvision's keypointrcnn_resnet50_fpn (weights=None, no
download) and segzoo's keypointrcnn R-50-FPN build from the peer table, have equal parameter
counts, and give the same detections and keypoints once the bench copies the peer's weights in."""

import torch

from segzoo.bench.flops import count_params
from segzoo.bench.peers import PAIRS, copy_weights, find_pairs, randomise_bn
from segzoo.bench.runner import for_timing
from segzoo.export.deploy import main_output

KEY = "torchvision keypointrcnn_resnet50_fpn"
# fewer proposals and detections than the bench's defaults keep the 8 x 512-d keypoint head cheap
SMALL = {"rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50, "box_detections_per_img": 4}


def _small(cand, size):
    timed = for_timing(cand, size)
    return type(cand)(timed.source, timed.name, {**timed.kwargs, **SMALL}, dict(timed.patch), timed.variant)


def test_keypointrcnn_peer_is_an_equal_pair_with_equal_parameter_counts():
    (pair,) = find_pairs(["keypointrcnn"])
    assert pair in PAIRS and pair.key == KEY
    assert pair.relation == "equal" and pair.status() == "ready"
    assert pair.copy == "from_torchvision:keypointrcnn"
    for num_classes in (2, 21):  # persons (torchvision's default) and the bench's class count
        ours, peer = pair.ours.build_meta(num_classes), pair.peer.build_meta(num_classes)
        assert count_params(ours) == count_params(peer) > 50_000_000


def test_keypointrcnn_peer_gives_our_outputs_after_the_bench_copies_its_weights():
    (pair,) = find_pairs(["keypointrcnn"])
    size = (80, 112)
    torch.manual_seed(0)
    ours, peer = _small(pair.ours, size).build(2), _small(pair.peer, size).build(2)
    randomise_bn(peer)
    copy_weights(pair.copy, peer, ours)
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        (ref,), (out,) = peer([image]), ours([image])
    assert len(ref["boxes"]) == len(out["boxes"]) == SMALL["box_detections_per_img"]  # not vacuous
    assert out["keypoints"].shape == (len(out["boxes"]), 17, 3)
    for key in ("boxes", "scores", "keypoints", "keypoints_scores"):
        assert (out[key] - ref[key]).abs().max() <= 1e-5, key
    assert torch.equal(out["labels"], ref["labels"])
    # what the bench's worker compares for an equal pair: the first image's first output tensor
    assert torch.equal(main_output([out]), out["boxes"]) and torch.equal(main_output([ref]), ref["boxes"])
