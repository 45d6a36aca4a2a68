"""torchvision's keypointrcnn_resnet50_fpn checkpoints load into segzoo's keypointrcnn and give the
same detections and keypoints (random weights saved and converted by the test: no downloads)."""

import pytest
import torch
import torchvision

from segzoo.errors import WeightsError
from segzoo.models import from_torchvision
from segzoo.models.detectors import keypointrcnn

SMALL = {"min_size": 96, "max_size": 128, "box_score_thresh": 0.0, "rpn_pre_nms_top_n_test": 200,
         "rpn_post_nms_top_n_test": 100}


def _randomise_norms(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so a misplaced key shows."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 1.0)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.25)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """torchvision's model with random weights, and ours loaded from its saved checkpoint."""
    torch.manual_seed(0)
    tv = torchvision.models.detection.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                                num_classes=2, num_keypoints=17, **SMALL)
    _randomise_norms(tv)
    path = tmp_path_factory.mktemp("kp") / "tv.pt"
    torch.save(tv.state_dict(), path)
    ours = keypointrcnn(num_classes=2, num_keypoints=17, backbone="resnet50", **SMALL)
    ours.load_state_dict(from_torchvision(torch.load(path), arch="keypointrcnn"))  # strict
    return tv, ours


def test_torchvision_keypointrcnn_checkpoint_gives_the_same_keypoints(pair):
    tv, ours = pair
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tv.parameters())
    tv.eval(), ours.eval()
    g = torch.Generator().manual_seed(2)
    images = [torch.rand(3, 96, 120, generator=g), torch.rand(3, 110, 90, generator=g)]
    with torch.no_grad():
        ref, out = tv(images), ours(images)
    for r, o in zip(ref, out):
        assert len(r["boxes"]) == len(o["boxes"]) >= 20  # not a vacuous comparison
        assert o["keypoints"].shape == (len(o["boxes"]), 17, 3)
        for key in ("boxes", "scores", "keypoints", "keypoints_scores"):
            assert (o[key] - r[key]).abs().max() <= 1e-5, key
        assert torch.equal(o["labels"], r["labels"])
        assert float(r["keypoints"][..., :2].std()) > 1.0  # keypoints spread over the image


def test_converted_keypointrcnn_trains_like_torchvision(pair):
    """Same weights, same targets: the same five losses (the keypoint loss is torchvision's)."""
    tv, ours = pair
    tv.train(), ours.train()
    images = [torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(3))]
    kp = torch.zeros(1, 17, 3)
    kp[0, :3] = torch.tensor([[20.0, 20.0, 2.0], [50.0, 30.0, 1.0], [30.0, 70.0, 0.0]])
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 80.0]]), "labels": torch.tensor([1]), "keypoints": kp}]
    with torch.no_grad():
        torch.manual_seed(5)
        ref = tv(images, targets)
        torch.manual_seed(5)
        got = ours(images, targets)
    assert set(got) == set(ref) and "loss_keypoint" in got
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=0)


def test_keypoint_converter_rejects_foreign_keys():
    with pytest.raises(WeightsError, match="keypointrcnn_resnet50_fpn"):
        from_torchvision({"classifier.0.weight": torch.zeros(1)}, arch="keypointrcnn")
