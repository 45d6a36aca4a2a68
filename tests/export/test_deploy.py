"""Deploy mode: conv+BN fusion keeps every registered model's outputs (within 1e-4), and the
deployed wrapper's contract (channels_last, inference_mode, autocast, compile plumbing)."""

import pytest
import torch
from torch import nn

import segzoo
from segzoo.export.deploy import find_conv_bn_pairs, fuse_conv_bn, optimize_for_inference
from segzoo.registry import MODELS

# every registered model, small: (name, builder kwargs). Each model's default backbone family is
# kept where it is cheap (VGG for FCN-xs, ResNet for the dilated models), plus the backbones whose
# BN layout differs: MobileNetV2 (torchvision Conv2dNormActivation, depthwise convs), the aligned
# Xception and an EfficientNet through timm (BatchNormAct2d), the U-Net encoder with BN.
TINY = {
    "fcn32s": [{"backbone": "vgg16_bn", "fc_channels": 16, "fc_kernel_size": 1}],
    "fcn16s": [{"backbone": "vgg16_bn", "fc_channels": 16, "fc_kernel_size": 1}],
    "fcn8s": [{"backbone": "vgg16_bn", "fc_channels": 16, "fc_kernel_size": 1},
              {"backbone": "resnet18", "fc_channels": 16, "fc_kernel_size": 3}],
    "fcn": [{"backbone": "resnet18", "auxiliary_head": True}],
    "unet": [{"backbone": "unet_encoder", "base_channels": 8, "depth": 3, "norm": "bn"},
             {"backbone": "resnet18"}],
    "deeplabv2": [{"backbone": "resnet18"}],
    "deeplabv3": [{"backbone": "resnet18", "bottleneck": True},
                  {"backbone": "mobilenet_v2", "output_stride": 16}],
    "deeplabv3plus": [{"backbone": "resnet18"}, {"backbone": "xception65"},
                      {"backbone": "tu-efficientnet_b0"}],
    "pspnet": [{"backbone": "resnet18"}],
    "encoder_decoder": [{"backbone": "mobilenet_v2", "decode_head": {"name": "psp_head", "channels": 16},
                         "auxiliary_head": {"name": "fcn_head", "in_index": -2}}],
}
CASES = [(name, kw) for name, kws in TINY.items() for kw in kws]


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters (fresh BNs are identities in eval)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.45 + 0.8)
                m.weight.copy_(torch.rand(n, generator=g) * 0.2 + 0.8)
                m.bias.copy_(torch.randn(n, generator=g) * 0.05)


def n_bn(model: nn.Module, skip: str = "auxiliary_head") -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for n, m in model.named_modules()
               if not n.startswith(skip))


def test_every_registered_model_is_covered():
    # semantic models here; the detectors (Mask R-CNN, Keypoint R-CNN) are checked on their
    # backbone features below (test_detector_deploy_checks_backbone_features)
    registered = {n for n in MODELS.names() if not MODELS.entry(n).meta.get("test_only")
                  and MODELS.entry(n).meta.get("task") != "instance"}
    assert registered <= set(TINY), f"add tiny settings for {sorted(registered - set(TINY))}"


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{k['backbone']}" for n, k in CASES])
def test_fused_outputs_match_unfused(name, kwargs):
    torch.manual_seed(0)
    model = segzoo.build_model(name, num_classes=5, **kwargs).eval()
    randomise_bn(model)
    x = torch.randn(2, 3, 64, 72)
    with torch.no_grad():
        ref = model(x)
    assert n_bn(model) > 0
    deployed = optimize_for_inference(model, example=x[:1])
    assert n_bn(model) > 0  # the original is untouched (a copy is fused)
    assert n_bn(deployed.model) == 0  # every BN run in eval mode was folded into its conv
    assert len(deployed.fusion.fused) > 0
    assert all(u.startswith("auxiliary_head") for u in deployed.fusion.unfused)
    out = deployed(x)
    assert out.shape == ref.shape == (2, 5, 64, 72)
    assert ref.abs().max() > 1e-3  # not a trivially small output
    assert (out - ref).abs().max().item() < 1e-4


def test_pairs_are_found_through_attributes_and_sequentials():
    model = segzoo.build_model("fcn", num_classes=3, backbone="resnet18").eval()
    pairs = dict(find_conv_bn_pairs(model, torch.randn(1, 3, 32, 32))[0])
    assert pairs["backbone.conv1"] == "backbone.bn1"                        # attributes (stem)
    assert pairs["backbone.layer1.0.conv2"] == "backbone.layer1.0.bn2"      # inside a block
    assert pairs["backbone.layer2.0.downsample.0"] == "backbone.layer2.0.downsample.1"
    assert pairs["decode_head.convs.0.0"] == "decode_head.convs.0.1"        # ConvNormAct


class SharedConv(nn.Module):
    """A conv whose output feeds a BN and another module: folding the BN would change the other
    branch, so it must be left alone."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.other = nn.ReLU()

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + self.other(y)


def test_a_conv_output_read_twice_is_not_fused():
    model = SharedConv().eval()
    randomise_bn(model)
    x = torch.randn(1, 3, 8, 8)
    report = fuse_conv_bn(model, x)
    assert report.fused == [] and report.unfused == ["bn"]
    assert isinstance(model.bn, nn.BatchNorm2d)


class FunctionalReuse(nn.Module):
    """The conv output also goes into a plain function the hooks cannot see: the output check
    catches the wrong fusion."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y * 2


def test_the_output_check_refuses_a_wrong_fusion():
    model = FunctionalReuse().eval()
    randomise_bn(model)
    with pytest.raises(ValueError, match="fusion changed the output"):
        optimize_for_inference(model, example_size=(1, 3, 8, 8))


def test_deployed_wrapper_contract():
    model = segzoo.build_model("deeplabv3plus", num_classes=4, backbone="resnet18").eval()
    randomise_bn(model)
    x = torch.randn(1, 3, 48, 48)
    deployed = optimize_for_inference(model)
    assert deployed.task == "semantic" and deployed.num_classes == 4
    assert deployed.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    out = deployed(x)
    assert out.is_inference()
    with pytest.raises(RuntimeError, match="inference-only"):
        deployed.train()
    plain = optimize_for_inference(model, fuse_bn=False, channels_last=False)
    assert plain.fusion is None and n_bn(plain.model) > 0
    with torch.no_grad():
        assert (plain(x) - model(x)).abs().max() == 0
    bf16 = optimize_for_inference(model, dtype="bf16")
    out16 = bf16(x)
    assert out16.dtype == torch.bfloat16
    assert (out16.float() - out).abs().max() < 0.1 * out.abs().max() + 0.05  # bf16: ~3 digits
    with pytest.raises(ValueError, match="dtype must be"):
        optimize_for_inference(model, dtype="int8")


def test_compile_path_with_the_eager_backend():
    """The torch.compile plumbing (a real inductor compile takes minutes on 2 CPU cores)."""
    model = segzoo.build_model("fcn", num_classes=3, backbone="resnet18").eval()
    randomise_bn(model)
    x = torch.randn(1, 3, 32, 32)
    deployed = optimize_for_inference(model, compile="backend:eager")
    assert deployed._run is not deployed.model
    with torch.no_grad():
        assert (deployed(x) - model(x)).abs().max() < 1e-4
    with pytest.raises(ValueError, match="unknown compile setting 'max-autotuned'"):
        optimize_for_inference(model, compile="max-autotuned")


def test_the_check_scales_with_the_output():
    """Randomly initialised deep ResNets in eval mode give outputs of 1e4 and more; float32
    rounding of the fused weights then moves them by more than 1e-4 absolute, not relative."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                          nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64)).eval()
    randomise_bn(model)
    with torch.no_grad():
        for conv in (model[0], model[3]):
            conv.weight.mul_(300.0)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
    deployed = optimize_for_inference(model, example=x)
    diff = (deployed(x) - ref).abs().max().item()
    assert ref.abs().max() > 1e4 and 1e-4 < diff < 1e-5 * ref.abs().max()
    with pytest.raises(ValueError, match="fusion changed the output"):
        optimize_for_inference(model, example=x, rtol=0.0)


@pytest.mark.parametrize("name", ["maskrcnn", "keypointrcnn"])
def test_detector_deploy_checks_backbone_features(name):
    """A detector's BatchNorms all sit in its backbone: fusion is checked on the FPN features
    (detections on random weights tie in score and reorder under float rounding), and
    ``compile`` compiles the backbone alone (the heads' shapes depend on the data)."""
    from segzoo.export.deploy import checked_output

    torch.manual_seed(0)
    model = segzoo.build_model(name, num_classes=3, backbone="resnet18", min_size=64, max_size=64,
                               box_detections_per_img=10).eval()  # cheap heads: bf16 is emulated on AVX2
    randomise_bn(model)
    images = [torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        ref = checked_output(model, images)
    assert ref.ndim == 1 and ref.numel() > 5 * 256  # every FPN level, flattened
    deployed = optimize_for_inference(model, example=images, compile="backend:eager")
    assert len(deployed.fusion.fused) == n_bn(model) > 0 and n_bn(deployed.model) == 0
    assert type(deployed.model.backbone).__name__ == "OptimizedModule"  # compiled: backbone only
    assert deployed._run is deployed.model
    with torch.no_grad():
        got = checked_output(deployed.model, images)
    assert (got - ref).abs().max() <= 1e-4 + 1e-5 * ref.abs().max()
    out = deployed(images)
    assert isinstance(out, list) and {"boxes", "labels", "scores"} <= set(out[0])
    if name == "maskrcnn":  # the autocast plumbing (the same wrapper for both detectors)
        bf16 = optimize_for_inference(model, example=images, dtype="bf16")
        assert isinstance(bf16(images)[0]["boxes"], torch.Tensor)


def test_a_detector_is_fused_in_its_backbone_only():
    """The check compares backbone features, so BatchNorms outside the backbone (the C4 variant's
    res5 box head) are left unfused and reported."""
    torch.manual_seed(0)
    model = segzoo.build_model("maskrcnn", num_classes=3, backbone="resnet18", variant="c4", min_size=64,
                               max_size=64, box_detections_per_img=10).eval()
    randomise_bn(model)
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))]
    deployed = optimize_for_inference(model, example=images)
    assert deployed.fusion.fused and all(bn.startswith("backbone.") for _, bn in deployed.fusion.fused)
    assert any(bn.startswith("roi_heads.") for bn in deployed.fusion.unfused)
    got = deployed(images)[0]
    assert {"boxes", "labels", "scores", "masks"} <= set(got) and len(got["boxes"]) <= 10
