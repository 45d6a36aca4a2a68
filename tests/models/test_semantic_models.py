"""The semantic model contract for every registered model x a sample of backbones, and a fast
overfit check per model (docs/models.md)."""

import pytest
import torch
import torch.nn.functional as F

import segzoo
from segzoo.data import ShapesDataset, build_pipeline
from segzoo.registry import MODELS

# Small widths keep these fast; the architectures are otherwise the papers'.
SLIM = {
    "fcn32s": {"fc_channels": 32, "fc_kernel_size": 1},
    "fcn16s": {"fc_channels": 32, "fc_kernel_size": 1},
    "fcn8s": {"fc_channels": 32, "fc_kernel_size": 1},
    "fcn": {"channels": 32, "auxiliary_head": True},
    "unet": {},
    "deeplabv2": {},
    "deeplabv3": {"channels": 32},
    "deeplabv3plus": {"channels": 32, "low_level_channels": 16},
    "pspnet": {"channels": 32, "ppm_channels": 16},
    "encoder_decoder": {"decode_head": {"name": "psp_head", "channels": 16, "ppm_channels": 8},
                        "auxiliary_head": {"name": "fcn_head", "in_index": -2, "channels": 8}},
}

CASES = [
    ("fcn32s", "resnet18", {}),
    ("fcn16s", "tu-resnet18", {}),
    ("fcn8s", "mobilenet_v2", {}),
    ("fcn8s", "vgg16_bn", {}),
    ("fcn", "resnet18", {}),
    ("fcn", "mobilenet_v2", {"output_stride": 16}),
    ("unet", "unet_encoder", {"base_channels": 8}),
    ("unet", "unet_encoder", {"base_channels": 8, "padding": "valid", "norm": "bn"}),
    ("unet", "resnet18", {"decoder_channels": (32, 16, 16, 8, 8)}),
    ("unet", "timm:efficientnet_b0", {"decoder_channels": (32, 16, 16, 8, 8)}),
    ("deeplabv2", "resnet18", {}),
    ("deeplabv2", "resnet18", {"branch_channels": 16, "atrous_rates": (2, 4, 8, 12)}),
    ("deeplabv3", "resnet18", {"multi_grid": (1, 2), "output_stride": 8}),
    ("deeplabv3", "mobilenet_v2", {"separable": True, "bottleneck": True, "norm": "gn"}),
    ("deeplabv3plus", "resnet18", {}),
    ("deeplabv3plus", "mobilenet_v2", {"separable": False}),
    ("deeplabv3plus", "tu-resnet18", {"norm": None, "auxiliary_head": True}),
    ("pspnet", "resnet18", {}),
    ("pspnet", "mobilenet_v2", {"auxiliary_head": False}),
    ("encoder_decoder", {"name": "mobilenet_v2", "output_stride": 16}, {}),
    ("encoder_decoder", "tu-resnet18", {"auxiliary_head": None, "decode_head": {
        "name": "unet_head", "decoder_channels": (16, 16, 8, 8, 8)}}),
]


def build(name, backbone, extra, num_classes=4):
    return segzoo.build_model(name, num_classes=num_classes, backbone=backbone,
                              **{**SLIM[name], **extra})


def test_cases_cover_every_registered_model():
    assert {c[0] for c in CASES} == set(MODELS.names(task="semantic", test_only=None))


@pytest.mark.parametrize("name,backbone,extra", CASES,
                         ids=[f"{c[0]}-{c[1] if isinstance(c[1], str) else c[1]['name']}-{i}"
                              for i, c in enumerate(CASES)])
def test_contract_sizes_gradients_batch_one_and_small_inputs(name, backbone, extra):
    torch.manual_seed(0)
    model = build(name, backbone, extra)
    assert model.task == "semantic" and model.loss_weights["out"] == 1.0

    model.train()
    out = model(torch.randn(2, 3, 97, 131))
    assert isinstance(out, dict) and set(out) == set(model.loss_weights)
    for v in out.values():
        assert v.shape == (2, 4, 97, 131)
    sum(w * out[k].logsumexp(1).mean() for k, w in model.loss_weights.items()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 97, 131))
    assert logits.shape == (1, 4, 97, 131) and torch.isfinite(logits).all()

    m = model.min_input_size
    with torch.no_grad():
        assert model(torch.randn(1, 3, m, m + 3)).shape == (1, 4, m, m + 3)
        with pytest.raises(ValueError, match=f"at least {m}x{m}"):
            model(torch.randn(1, 3, m - 1, 64))


def test_aux_heads_train_only_with_configurable_weight():
    model = segzoo.build_model("pspnet", num_classes=3, backbone="resnet18", channels=16,
                               ppm_channels=8, aux_loss_weight=0.25)
    assert model.loss_weights == {"out": 1.0, "aux": 0.25}
    assert model.auxiliary_head.in_index == -2  # res4 (layer3)
    assert segzoo.build_model("pspnet", num_classes=3, backbone="resnet18").loss_weights["aux"] == 0.4
    model.eval()
    with torch.no_grad():
        assert isinstance(model(torch.randn(1, 3, 32, 32)), torch.Tensor)
    no_aux = segzoo.build_model("pspnet", num_classes=3, backbone="resnet18", auxiliary_head=False)
    assert no_aux.auxiliary_head is None and no_aux.loss_weights == {"out": 1.0}
    # any head as the auxiliary head of a named model, its loss weight in the spec
    psp_aux = segzoo.build_model("deeplabv3", num_classes=3, backbone="resnet18", channels=16,
                                 auxiliary_head={"name": "psp_head", "in_index": -2,
                                                 "channels": 8, "loss_weight": 0.3})
    assert type(psp_aux.auxiliary_head).__name__ == "PSPHead"
    assert psp_aux.loss_weights == {"out": 1.0, "aux": 0.3}


def test_old_aux_head_keyword_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="'aux_head' is deprecated, use 'auxiliary_head'"):
        old = segzoo.build_model("fcn", num_classes=3, backbone="resnet18", aux_head=True)
    assert old.loss_weights == {"out": 1.0, "aux": 0.4}
    with pytest.raises(TypeError, match="give only one"):
        segzoo.build_model("fcn", num_classes=3, backbone="resnet18", aux_head=True,
                           auxiliary_head=True)


def test_backbone_without_output_stride_is_refused_clearly():
    with pytest.raises(ValueError, match="'vgg16' has no output_stride option"):
        segzoo.build_model("deeplabv3", num_classes=3, backbone="vgg16")
    with pytest.raises(ValueError, match="multi_grid"):
        segzoo.build_model("deeplabv3", num_classes=3, backbone="mobilenet_v2", multi_grid=(1, 2, 4))
    deep_only = {"name": "tu-resnet18", "out_indices": (2, 3, 4)}  # strides 8, 16, 32
    with pytest.raises(ValueError, match="deeplabv3plus_head cannot decode backbone 'tu-resnet18'.*"
                       r"strides \(8, 16, 32\).*stride-4 low-level feature.*Registered backbones.*resnet18"):
        segzoo.build_model("encoder_decoder", num_classes=3, backbone=deep_only,
                           decode_head="deeplabv3plus_head")


# -- overfitting: each model learns a few shapes images ---------------------------------------

# (name, backbone, builder extras, Adam lr); output stride 16 halves the cost of OS 8 here
OVERFIT = [
    ("fcn32s", "resnet18", {}, 3e-3),
    ("fcn16s", "resnet18", {}, 3e-3),
    ("fcn8s", "resnet18", {}, 3e-3),
    ("fcn", "resnet18", {"output_stride": 16}, 3e-3),
    ("unet", "unet_encoder", {"base_channels": 8, "norm": "bn"}, 1e-2),
    ("deeplabv2", "resnet18", {"output_stride": 16}, 3e-3),
    ("deeplabv3", "resnet18", {"output_stride": 16}, 3e-3),
    ("deeplabv3plus", "resnet18", {"output_stride": 16}, 3e-3),
    ("pspnet", "resnet18", {"output_stride": 16}, 3e-3),
    ("encoder_decoder", {"name": "resnet18", "output_stride": 16}, {}, 3e-3),
]


@pytest.fixture(scope="module")
def shapes_batch():
    data = ShapesDataset(split="train", num_images=2, size=(64, 64), seed=3)
    data.transforms = build_pipeline([])
    samples = [data[i] for i in range(len(data))]
    return torch.stack([s["image"] for s in samples]), torch.stack([s["mask"] for s in samples]).long()


def test_overfit_cases_cover_every_registered_model():
    assert {c[0] for c in OVERFIT} == set(MODELS.names(task="semantic", test_only=None))


@pytest.mark.parametrize("name,backbone,extra,lr", OVERFIT, ids=[c[0] for c in OVERFIT])
def test_each_model_overfits_a_few_shapes_images(name, backbone, extra, lr, shapes_batch):
    torch.manual_seed(0)
    images, masks = shapes_batch
    model = build(name, backbone, extra).train()
    for m in model.modules():  # deterministic: no dropout in this check
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(30):
        out = model(images)
        loss = sum(w * F.cross_entropy(out[k], masks) for k, w in model.loss_weights.items())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.5 * losses[0], [round(x, 3) for x in losses]
