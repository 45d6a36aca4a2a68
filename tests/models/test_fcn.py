import pytest
import torch
import torch.nn.functional as F
import torchvision

import segzoo
from segzoo.errors import WeightsError
from segzoo.models import fcn8s, fcn16s, fcn32s
from segzoo.models.layers import BilinearConvTranspose2d


def slim(builder, **kw):
    return builder(num_classes=5, backbone="vgg16_bn", fc_channels=32, fc_kernel_size=3, **kw)


@pytest.mark.parametrize("builder", [fcn32s, fcn16s, fcn8s])
@pytest.mark.parametrize("size", [(97, 131), (32, 32), (64, 45)])
def test_eval_logits_at_input_size(builder, size):
    model = slim(builder).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 5, *size) and out.dtype == torch.float32


def test_training_mode_returns_dict_and_finite_gradients():
    model = slim(fcn8s).train()
    out = model(torch.randn(2, 3, 97, 131))
    assert set(out) == {"out"} and out["out"].shape == (2, 5, 97, 131)
    assert model.loss_weights == {"out": 1.0}
    out["out"].logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the zero-initialised skip scores receive gradient, so the skips can learn
    assert model.decode_head.score_pool3.weight.grad.abs().sum() > 0


def test_paper_parameter_count_vgg16_fcn8s():
    model = segzoo.build_model("fcn8s", num_classes=21)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 134e6) / 134e6 < 0.01, n  # the paper's ~134M


def test_skip_structure_matches_paper():
    m32, m16, m8 = slim(fcn32s), slim(fcn16s), slim(fcn8s)
    assert not hasattr(m32.decode_head, "score_pool4")
    assert hasattr(m16.decode_head, "score_pool4") and not hasattr(m16.decode_head, "score_pool3")
    assert hasattr(m8.decode_head, "score_pool3")
    assert m32.decode_head.output_stride == 32
    assert m16.decode_head.output_stride == 16
    assert m8.decode_head.output_stride == 8
    # zero-initialised skips: FCN-8s starts as FCN-32s's coarse prediction (paper sec. 4.2)
    assert m8.decode_head.score_pool4.weight.abs().sum() == 0


def test_too_small_or_malformed_input_is_refused_clearly():
    model = slim(fcn8s).eval()
    with pytest.raises(ValueError, match="at least 32x32"):
        model(torch.randn(1, 3, 31, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="float"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_eval_batch_size_one():
    model = slim(fcn8s).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 40, 40)).shape == (1, 5, 40, 40)


def test_bilinear_deconv_initialisation_is_bilinear_upsampling():
    up = BilinearConvTranspose2d(3, 2)
    x = torch.randn(1, 3, 6, 8)
    y = up(x)
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    # identical away from the border (the deconv zero-pads where interpolate clamps)
    assert torch.allclose(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-6)
    assert up(x, output_size=[13, 17]).shape[-2:] == (13, 17)


def test_backbone_weights_load_from_saved_torchvision_checkpoint(tmp_path):
    tv = torchvision.models.vgg16(weights=None)
    path = tmp_path / "vgg16.pth"
    torch.save(tv.state_dict(), path)
    model = segzoo.build_model("fcn8s", num_classes=3, weights_backbone=str(path))
    assert torch.equal(model.backbone.features[0].weight, tv.features[0].weight)
    assert torch.equal(model.backbone.features[28].bias, tv.features[28].bias)
    # convolutionalised classifier (FCN sec. 3.1): fc6 reproduces VGG's fc6 on a 7x7 pool5
    pool5 = torch.randn(1, 512, 7, 7)
    fc6_conv = F.conv2d(pool5, model.decode_head.fc6.weight, model.decode_head.fc6.bias)
    fc6_lin = tv.classifier[0](pool5.flatten(1))
    assert torch.allclose(fc6_conv.flatten(), fc6_lin.flatten(), atol=1e-4)


def test_backbone_weights_from_safetensors_and_mismatch_errors(tmp_path):
    from safetensors.torch import save_file

    ref = segzoo.build_backbone("vgg16_bn")
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, tmp_path / "bn.safetensors")
    m = segzoo.build_model("fcn32s", num_classes=2, backbone="vgg16_bn", fc_channels=8,
                           weights_backbone=str(tmp_path / "bn.safetensors"))
    assert torch.equal(m.backbone.features[1].running_var, ref.features[1].running_var)
    # plain VGG weights do not fit the BN variant: the error lists what is missing
    torch.save(torchvision.models.vgg16().features.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(WeightsError, match="missing key"):
        segzoo.build_model("fcn32s", num_classes=2, backbone="vgg16_bn",
                           weights_backbone=str(tmp_path / "plain.pt"))
    with pytest.raises(WeightsError, match="does not exist"):
        segzoo.build_model("fcn32s", num_classes=2, weights_backbone=str(tmp_path / "nope.pt"))
