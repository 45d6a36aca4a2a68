"""torchvision's maskrcnn_resnet50_fpn checkpoints load into segzoo's maskrcnn and give the same
detections (randomly initialised weights, saved and converted by the test: no downloads)."""

import pytest
import torch
import torchvision

from segzoo.errors import WeightsError
from segzoo.models import from_torchvision, maskrcnn

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
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.25)  # keeps activations O(1)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def test_torchvision_maskrcnn_checkpoint_gives_the_same_detections(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                            num_classes=5, **SMALL)
    _randomise_norms(tv)
    torch.save(tv.state_dict(), tmp_path / "tv.pt")
    ours = maskrcnn(num_classes=5, backbone="resnet50", **SMALL)
    ours.load_state_dict(from_torchvision(torch.load(tmp_path / "tv.pt"), arch="maskrcnn"))  # strict
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tv.parameters())
    tv.eval(), ours.eval()
    g = torch.Generator().manual_seed(2)
    images = [torch.rand(3, 96, 120, generator=g), torch.rand(3, 110, 90, generator=g)]
    with torch.no_grad():
        # stage by stage: proposals of the RPN, then the final detections
        il, _ = tv.transform(images)
        il2, _ = ours.transform(images)
        feats_tv, feats = tv.backbone(il.tensors), ours.features(il2.tensors)
        assert list(feats_tv) == list(feats) == ["0", "1", "2", "3", "pool"]
        for k in feats:
            torch.testing.assert_close(feats[k], feats_tv[k], atol=1e-4, rtol=0)
        props_tv, _ = tv.rpn(il, feats_tv)
        props, _ = ours.rpn(il2, feats)
        for a, b in zip(props, props_tv):
            assert len(a) >= 90  # the top 100 after NMS
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
        ref, out = tv(images), ours(images)
    for r, o in zip(ref, out):
        assert len(r["boxes"]) == len(o["boxes"]) >= 50  # not a vacuous comparison
        assert o["masks"].shape == (len(o["boxes"]), 1, *r["masks"].shape[-2:])
        for key in ("boxes", "scores", "masks"):
            torch.testing.assert_close(o[key], r[key], atol=1e-4, rtol=0)
        assert torch.equal(o["labels"], r["labels"])
        assert float(r["masks"].std()) > 1e-3  # the masks are not constant


def test_converter_rejects_foreign_keys():
    with pytest.raises(WeightsError, match="maskrcnn_resnet50_fpn"):
        from_torchvision({"classifier.0.weight": torch.zeros(1)}, arch="maskrcnn")
