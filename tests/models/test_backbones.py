"""Backbones: strides, channels, dilation, torchvision/timm key compatibility, weights."""

import pytest
import timm
import torch
import torchvision
from torch._dynamo.testing import CompileCounter

import segzoo
from segzoo.errors import RegistryError, WeightsError
from segzoo.models.backbones.timm_adapter import check_strides
from segzoo.registry import BACKBONES
from segzoo.versions import release


def shapes(backbone, size=(64, 96)):
    backbone.eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, *size))
    assert [f.shape[1] for f in feats] == list(backbone.out_channels)
    return [tuple(f.shape[-2:]) for f in feats]


@pytest.mark.parametrize("output_stride,strides", [(32, (2, 4, 8, 16, 32)), (16, (2, 4, 8, 16, 16)),
                                                   (8, (2, 4, 8, 8, 8))])
def test_resnet18_output_stride_by_dilation(output_stride, strides):
    b = segzoo.build_backbone("resnet18", output_stride=output_stride)
    assert b.out_strides == strides and b.out_channels == (64, 64, 128, 256, 512)
    assert shapes(b) == [(64 // s, 96 // s) for s in strides]


def test_resnet50_matches_torchvision_dilation_and_loads_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]).eval()
    path = tmp_path / "resnet50.pth"
    torch.save(tv.state_dict(), path)  # includes fc.*: skipped as unexpected
    ours = segzoo.build_backbone("resnet50", output_stride=8, weights=str(path)).eval()
    assert ours.out_channels == (64, 256, 512, 1024, 2048)
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        ref = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
        assert torch.allclose(ours(x)[-1], ref, atol=1e-5)


def test_multi_grid_rates_on_layer4_units():
    b = segzoo.build_backbone("resnet50", output_stride=16, multi_grid=(1, 2, 4))
    assert [blk.conv2.dilation[0] for blk in b.layer4] == [2, 4, 8]  # DeepLab v3: 2 x (1, 2, 4)
    b = segzoo.build_backbone("resnet18", output_stride=8, multi_grid=(1, 2))
    assert [blk.conv2.dilation[0] for blk in b.layer4] == [4, 8]
    assert [blk.conv2.dilation[0] for blk in b.layer3] == [1, 2]  # torchvision's pattern
    with pytest.raises(ValueError, match="one positive rate per layer4 unit \\(2 here\\)"):
        segzoo.build_backbone("resnet18", multi_grid=(1, 2, 4))
    with pytest.raises(ValueError, match="8, 16 or 32"):
        segzoo.build_backbone("resnet34", output_stride=4)


@pytest.mark.parametrize("output_stride,strides", [(32, (2, 4, 8, 16, 32)), (16, (2, 4, 8, 16, 16)),
                                                   (8, (2, 4, 8, 8, 8))])
def test_mobilenet_v2_output_stride(output_stride, strides):
    b = segzoo.build_backbone("mobilenet_v2", output_stride=output_stride)
    assert b.out_strides == strides and b.out_channels == (16, 24, 32, 96, 1280)
    assert shapes(b) == [(64 // s, 96 // s) for s in strides]
    rates = [blk.conv[1][0].dilation[0] for blk in b.features[14:18]]  # the stride-32 stage
    assert rates == {32: [1, 1, 1, 1], 16: [1, 2, 2, 2], 8: [2, 4, 4, 4]}[output_stride]


@pytest.mark.shared_data
def test_mobilenet_v2_loads_the_shared_imagenet_weights(shared_data):
    rel = "weights/mobilenet_v2_imagenet_features.safetensors"  # found under the shared folder
    assert (shared_data / rel).is_file()
    ours = segzoo.build_backbone("mobilenet_v2", weights=rel).eval()
    tv = torchvision.models.mobilenet_v2().eval()
    from safetensors.torch import load_file

    tv.load_state_dict(load_file(str(shared_data / rel)), strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x)[-1], tv.features(x), atol=1e-5)
    dilated = segzoo.build_backbone("mobilenet_v2", weights=rel, output_stride=8)
    assert torch.equal(dilated.features[17].conv[1][0].weight, ours.features[17].conv[1][0].weight)


def test_weights_key_checking_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGZOO_DATA", str(tmp_path))
    (tmp_path / "weights").mkdir()
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "weights" / "r18.pt")
    b = segzoo.build_backbone("resnet18", weights="weights/r18.pt")  # resolved under SEGZOO_DATA
    assert b.conv1.weight.shape == (64, 3, 7, 7)
    with pytest.raises(WeightsError, match="missing key"):
        segzoo.build_backbone("resnet34", weights="weights/r18.pt")
    with pytest.raises(WeightsError, match="shape mismatch"):
        segzoo.build_backbone("mobilenet_v2", weights=_save_mismatched(tmp_path))
    with pytest.raises(WeightsError, match="does not exist.*SEGZOO_DATA"):
        segzoo.build_backbone("resnet18", weights="weights/nope.pt")


def _save_mismatched(tmp_path):
    state = torchvision.models.mobilenet_v2().features.state_dict()
    state = {f"features.{k}": v for k, v in state.items()}
    state["features.0.0.weight"] = torch.zeros(8, 3, 3, 3)
    path = tmp_path / "mnv2_bad.pt"
    torch.save(state, path)
    return str(path)


def test_timm_adapter_names_strides_and_errors():
    assert "tu-resnet18" in BACKBONES and "timm:efficientnet_b0" in BACKBONES
    assert "tu-not_a_model" not in BACKBONES
    assert set(BACKBONES.config_params("tu-resnet18")) == {"weights", "output_stride", "out_indices", "timm_kwargs"}
    b = segzoo.build_backbone("tu-resnet18", output_stride=16)
    assert b.out_strides == (2, 4, 8, 16, 16) and b.out_channels == (64, 64, 128, 256, 512)
    assert shapes(b) == [(32, 48), (16, 24), (8, 12), (4, 6), (4, 6)]
    e = segzoo.build_backbone("timm:efficientnet_b0")
    assert e.out_strides == (2, 4, 8, 16, 32) and e.out_channels == (16, 24, 40, 112, 320)
    with pytest.raises(RegistryError, match="did you mean 'tu-resnet18'"):
        segzoo.build_backbone("tu-resnt18")
    with pytest.raises(ValueError, match="does not support output_stride=16"):
        segzoo.build_backbone("timm:pit_ti_224", output_stride=16)


def test_timm_output_stride_taken_but_not_applied_is_refused(monkeypatch):
    # timm 0.9's Swin takes output_stride=16 and keeps its stride-32 maps; here resnet18 is made
    # to do the same by dropping the argument before timm sees it
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model",
                        lambda name, **kw: real(name, **{k: v for k, v in kw.items() if k != "output_stride"}))
    with pytest.raises(ValueError, match=r"'resnet18' took output_stride=16 but does not dilate: its "
                                         r"feature strides stay \(2, 4, 8, 16, 32\); use output_stride=32"):
        segzoo.build_backbone("tu-resnet18", output_stride=16)
    assert segzoo.build_backbone("tu-resnet18").out_strides == (2, 4, 8, 16, 32)


def test_timm_maps_that_contradict_their_strides_are_refused_on_the_first_telling_forward():
    # timm 0.9 reports MetaFormers' strides as (2, 2, 2, 2) for maps at (4, 8, 16, 32): the
    # decoder would be built for strides the maps do not have. Here resnet18 declares a dilated
    # last stage that it does not have.
    b = segzoo.build_backbone("tu-resnet18").eval()
    b.out_strides = (2, 4, 8, 16, 16)
    with torch.no_grad():
        b(torch.randn(1, 3, 64, 64))  # the last step (4 -> 2 px) is too small to tell: unjudged
        assert not b._strides_checked
        with pytest.raises(ValueError, match=r"'resnet18': its feature maps are at strides "
                                             r"~\[2.0, 4.0, 8.0, 16.0, 32.0\] of the input, but "
                                             r"feature_info says \(2, 4, 8, 16, 16\).*pip install -U timm"):
            b(torch.randn(1, 3, 160, 96))
        good = segzoo.build_backbone("tu-resnet18", output_stride=16).eval()
        good(torch.randn(1, 3, 160, 96))
        assert good._strides_checked  # judged once, not again


def test_timm_stride_check_runs_under_torch_compile_without_a_guard_on_its_flag():
    # A compiled model (train.compile) checks its maps while Dynamo traces it. A guard on the
    # checked flag would recompile it once an eager evaluation of the same module sets the flag
    backend = CompileCounter()  # counts Dynamo's graphs and runs them as they are
    x = torch.randn(1, 3, 160, 96)
    torch._dynamo.reset()
    good = segzoo.build_backbone("tu-resnet18").eval()
    compiled = torch.compile(good, backend=backend)
    with torch.no_grad():
        compiled(x)
        assert backend.frame_count == 1 and not good._strides_checked  # traced whole, flag untouched
        good(x)  # eager (an evaluation): checked and flagged
        assert good._strides_checked
        compiled(x)
    assert backend.frame_count == 1  # no recompilation
    torch._dynamo.reset()
    bad = segzoo.build_backbone("tu-resnet18").eval()
    bad.out_strides = (2, 4, 8, 16, 16)
    with torch.no_grad(), pytest.raises(ValueError, match=r"'resnet18': its feature maps are at strides "
                                                          r"~\[2.0, 4.0, 8.0, 16.0, 32.0\]"):
        torch.compile(bad, backend=backend)(x)
    torch._dynamo.reset()


def test_stride_check_accepts_padded_and_valid_convolutions_and_names_a_missing_step():
    # Inception v3 at 299 px ('valid' convolutions) and a ResNet at an odd size (ceil)
    assert check_strides([(299, 299), (149, 149), (73, 73), (35, 35), (17, 17), (8, 8)], (1, 2, 4, 8, 16, 32), "m")
    assert check_strides([(129, 193), (65, 97), (33, 49), (17, 25), (9, 13), (5, 7)], (1, 2, 4, 8, 16, 32), "m")
    assert not check_strides([(32, 32), (8, 8), (4, 4), (2, 2)], (1, 4, 8, 16), "m")  # 4 -> 2: unjudged
    with pytest.raises(ValueError, match=r"strides ~\[4.0, 8.0, 8.0\] .* says \(4, 8, 16\)"):
        check_strides([(64, 64), (16, 16), (8, 8), (8, 8)], (1, 4, 8, 16), "m")


def test_timm_adapter_gives_channels_first_maps_of_channels_last_models():
    b = segzoo.build_backbone("tu-swin_tiny_patch4_window7_224")  # timm: (B, H, W, C) features
    assert b.out_strides == (4, 8, 16, 32) and b.out_channels == (96, 192, 384, 768)
    assert shapes(b, size=(224, 224)) == [(56, 56), (28, 28), (14, 14), (7, 7)]


def test_timm_kwargs_reach_timm_and_bad_ones_are_named():
    # Swin at 128 px (timm's default 224 is fixed): window 4 divides every stage's 32..4 token grid
    backbone = {"name": "tu-swin_tiny_patch4_window7_224", "timm_kwargs": {"img_size": 128, "window_size": 4}}
    model = segzoo.build_model("encoder_decoder", num_classes=3, backbone=backbone,
                               decode_head={"name": "fcn_head"}).eval()
    assert shapes(model.backbone, size=(128, 128)) == [(32, 32), (16, 16), (8, 8), (4, 4)]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 128, 128)).shape == (1, 3, 128, 128)
    with pytest.raises(ValueError, match=r"'resnet18' does not support bogus=1 \(.*unexpected keyword"):
        segzoo.build_backbone("tu-resnet18", timm_kwargs={"bogus": 1})
    with pytest.raises(ValueError, match=r"timm_kwargs may not set \['output_stride'\]"):
        segzoo.build_backbone("tu-resnet18", timm_kwargs={"output_stride": 8})


def test_timm_adapter_names_models_without_feature_maps():
    if release(timm.__version__) >= (1, 0):  # ViT feature maps: timm >= 1.0.3 (the first 1.0 release)
        assert segzoo.build_backbone("timm:vit_tiny_patch16_224").out_strides == (16, 16, 16)
    else:
        with pytest.raises(ValueError, match=r"cannot return the feature maps of 'vit_tiny_patch16_224'"
                                             r".*timm >= 1\.0\.3"):
            segzoo.build_backbone("timm:vit_tiny_patch16_224")


def test_timm_adapter_loads_full_model_checkpoints(tmp_path):
    torch.manual_seed(0)
    full = timm.create_model("resnet18", pretrained=False).eval()
    torch.save(full.state_dict(), tmp_path / "r18_timm.pt")
    b = segzoo.build_backbone("tu-resnet18", weights=str(tmp_path / "r18_timm.pt")).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(b(x)[-1], full.forward_features(x), atol=1e-5)
    # xception's feature wrapper renames modules (stem.0 -> stem_0): still loads
    xc = timm.create_model("xception41", pretrained=False)
    torch.save(xc.state_dict(), tmp_path / "xc.pt")
    b = segzoo.build_backbone("timm:xception41", weights=str(tmp_path / "xc.pt"))
    assert torch.equal(b.model.state_dict()["stem_0.conv.weight"], xc.state_dict()["stem.0.conv.weight"])
    with pytest.raises(WeightsError, match="missing key"):
        segzoo.build_backbone("tu-resnet34", weights=str(tmp_path / "r18_timm.pt"))


def test_aligned_xception65_for_deeplabv3plus():
    b = segzoo.build_backbone("xception65", output_stride=16)
    assert b.out_strides == (2, 4, 8, 16, 16) and b.out_channels == (128, 256, 728, 1024, 2048)
    assert shapes(b, (64, 64)) == [(32, 32), (16, 16), (8, 8), (4, 4), (4, 4)]


@pytest.mark.parametrize("padding,sizes", [("same", [(64, 96), (32, 48), (16, 24), (8, 12), (4, 6)]),
                                           ("valid", [(188, 188), (90, 90), (41, 41), (16, 16), (4, 4)])])
def test_unet_encoder_levels(padding, sizes):
    b = segzoo.build_backbone("unet_encoder", base_channels=4, padding=padding)
    assert b.out_channels == (4, 8, 16, 32, 64) and b.out_strides == (1, 2, 4, 8, 16)
    assert shapes(b, (64, 96) if padding == "same" else (192, 192)) == sizes
