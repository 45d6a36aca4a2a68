"""Our fcn_resnet50 / deeplabv3_resnet50 equal torchvision's, and its checkpoints convert."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import segmentation as tvseg

from segzoo.errors import WeightsError
from segzoo.models import deeplabv3_resnet50, fcn_resnet50, from_torchvision
from segzoo.models.weights import load_state_dict

PAIRS = [(fcn_resnet50, tvseg.fcn_resnet50, "fcn"), (deeplabv3_resnet50, tvseg.deeplabv3_resnet50, "deeplabv3")]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def randomised_torchvision(builder, aux):
    torch.manual_seed(0)
    tv = builder(weights=None, weights_backbone=None, num_classes=21, aux_loss=aux)
    with torch.no_grad():  # non-trivial BN parameters and statistics, of moderate scale
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.8, 1.25)
                m.weight.uniform_(0.8, 1.0)
                m.bias.normal_(0, 0.05)
    return tv.eval()


@pytest.mark.parametrize("ours,theirs,arch", PAIRS, ids=["fcn", "deeplabv3"])
@pytest.mark.parametrize("aux", [False, True])
def test_same_parameter_count_and_outputs_after_conversion(ours, theirs, arch, aux, tmp_path):
    tv = randomised_torchvision(theirs, aux)
    model = ours(num_classes=21, aux_loss=aux).eval()
    assert n_params(model) == n_params(tv)  # e.g. 35,322,218 for fcn_resnet50(aux_loss=True)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)  # as a user would hold torchvision's published weights
    model.load_state_dict(from_torchvision(load_state_dict(path), arch=arch), strict=True)
    x = torch.randn(2, 3, 67, 75)
    with torch.no_grad():
        ref = tv(x)
        out = model(x)
        assert ref["out"].abs().max() > 0.1  # not a trivially small output
        assert (out - ref["out"]).abs().max() < 1e-5
        if aux:
            feats = model.backbone(x)
            aux_out = F.interpolate(model.auxiliary_head(feats), size=x.shape[-2:], mode="bilinear",
                                    align_corners=False)
            assert (aux_out - ref["aux"]).abs().max() < 1e-5


def test_converter_refuses_unknown_keys_and_archs():
    with pytest.raises(WeightsError, match="key\\(s\\) it does not know: classifier.9.weight"):
        from_torchvision({"classifier.9.weight": torch.zeros(1)}, arch="fcn")
    with pytest.raises(WeightsError, match="unknown arch 'lraspp'"):
        from_torchvision({}, arch="lraspp")
