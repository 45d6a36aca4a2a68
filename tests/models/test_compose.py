"""Composition from registered parts: every decode head on every backbone family (or the
documented build-time error), encoder_decoder from Python and from config, necks, the head
catalogue, and the three worked configs of docs/models.md trained through the engine."""

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import CONFIGS

import segzoo
from segzoo.config import load_config
from segzoo.errors import ConfigError, RegistryError
from segzoo.models.heads import describe_heads, fitting_backbones
from segzoo.registry import HEADS

# small widths keep this fast; every other option is the head's default
HEAD_OPTIONS = {
    "aspp_head": {"channels": 16},
    "aspp_v2_head": {"atrous_rates": (1, 2)},
    "deeplabv3plus_head": {"channels": 16, "low_level_channels": 8},
    "fcn_head": {"channels": 16},
    "fcn_skip_head": {"fc_channels": 16, "fc_kernel_size": 1},
    "psp_head": {"channels": 16, "ppm_channels": 8},
    "unet_head": {"decoder_channels": (32, 16, 16, 8, 8)},
}
BACKBONES = ["resnet18", "mobilenet_v2", "vgg16_bn", "tu-resnet10t"]


def test_every_registered_head_is_covered():
    assert set(HEAD_OPTIONS) == set(HEADS.names())


def test_every_head_is_in_the_docs_table():
    docs = (CONFIGS.parent / "docs" / "models.md").read_text()
    table = docs.split("## Compose your own", 1)[1]
    assert all(f"| `{name}` |" in table for name in HEADS.names())


def test_head_files_and_registry_names_agree():
    folder = Path(segzoo.__file__).parent / "models" / "heads"
    files = {p.stem for p in folder.glob("*_head.py")}
    assert files == set(HEADS.names())
    for stem in files:
        assert re.search(rf'HEADS\.register\(\s*"{stem}"', (folder / f"{stem}.py").read_text()), stem


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head", sorted(HEAD_OPTIONS))
def test_head_on_backbone_gives_logits_and_trains_one_step(head, backbone):
    torch.manual_seed(0)
    model = segzoo.build_model("encoder_decoder", num_classes=3, backbone=backbone,
                               decode_head={"name": head, **HEAD_OPTIONS[head]},
                               auxiliary_head={"name": "fcn_head", "in_index": -2, "channels": 8})
    images, masks = torch.randn(2, 3, 97, 131), torch.randint(0, 3, (2, 97, 131))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    out = model(images)
    assert set(out) == {"out", "aux"} and all(v.shape == (2, 3, 97, 131) for v in out.values())
    loss = sum(w * F.cross_entropy(out[k], masks) for k, w in model.loss_weights.items())
    assert torch.isfinite(loss)
    before = model.decode_head.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = model.decode_head.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the step reached the head
    assert all(torch.isfinite(p).all() for p in model.parameters())


# (head spec, backbone spec, what the error says): pairings that cannot work fail at build time,
# naming head and backbone and listing the backbones that fit
DEEP_ONLY = {"name": "tu-resnet18", "out_indices": (2, 3, 4)}  # strides 8, 16, 32
MISFITS = [
    ({"name": "unet_head"}, DEEP_ONLY, "skips down to stride 2 or 4"),
    ({"name": "deeplabv3plus_head"}, DEEP_ONLY, "stride-4 low-level feature"),
    ({"name": "aspp_head", "in_index": 1}, "resnet18", "output stride 4"),
    ({"name": "fcn_skip_head", "num_skips": 2}, {"name": "tu-resnet18", "out_indices": (4,)},
     "num_skips=2 needs a skip feature"),
    ({"name": "psp_head", "in_index": -7}, "resnet18", "in_index=-7 is out of range"),
]


@pytest.mark.parametrize("head,backbone,says", MISFITS, ids=[m[0]["name"] for m in MISFITS])
def test_misfits_are_refused_at_build_time_naming_both(head, backbone, says):
    name = backbone if isinstance(backbone, str) else backbone["name"]
    with pytest.raises(ValueError) as exc:
        segzoo.build_model("encoder_decoder", num_classes=3, backbone=backbone, decode_head=head)
    msg = str(exc.value)
    assert f"{head['name']} cannot decode backbone {name!r}" in msg and says in msg
    assert "strides (" in msg and "Registered backbones (at their default options) that" in msg


def test_misfit_error_lists_the_backbones_that_fit():
    with pytest.raises(ValueError) as exc:
        segzoo.build_model("encoder_decoder", num_classes=3, backbone=DEEP_ONLY, decode_head="unet_head")
    fits = str(exc.value).rsplit(":", 1)[1]
    assert {"resnet18", "mobilenet_v2", "vgg16", "unet_encoder", "tu-<name>"} <= {
        f.strip() for f in fits.split(",")}


def test_unet_valid_padding_needs_the_valid_original_encoder():
    with pytest.raises(ValueError, match="padding 'valid' needs the original encoder"):
        segzoo.build_model("encoder_decoder", num_classes=2, backbone="resnet18",
                           decode_head={"name": "unet_head", "padding": "valid"})
    model = segzoo.build_model("encoder_decoder", num_classes=2, backbone={
        "name": "unet_encoder", "base_channels": 4, "depth": 2, "padding": "valid"},
        decode_head={"name": "unet_head", "padding": "valid", "upsampling": "transposed"})
    assert type(model).__name__ == "UNet" and model.output_size(60) == 20
    assert model.eval()(torch.randn(1, 3, 37, 41)).shape == (1, 2, 37, 41)


def test_python_api_of_the_issue_and_plain_backbone_names():
    model = segzoo.build_model("encoder_decoder", num_classes=5, backbone={"name": "resnet18"},
                               decode_head={"name": "psp_head", "channels": 16},
                               auxiliary_head={"name": "fcn_head", "in_index": -2})
    assert model.loss_weights == {"out": 1.0, "aux": 0.4}
    assert model.auxiliary_head.in_index == -2 and model.decode_head.conv_seg.in_channels == 16
    plain = segzoo.build_model("encoder_decoder", num_classes=5, backbone="resnet18",
                               decode_head="fcn_head")
    assert plain.auxiliary_head is None and plain.loss_weights == {"out": 1.0}
    assert plain.decode_head.convs[0][0].in_channels == 512  # wired to layer4 of ResNet-18


def test_bad_parts_and_options_are_refused_clearly():
    with pytest.raises(RegistryError, match="did you mean 'psp_head'"):
        segzoo.build_model("encoder_decoder", num_classes=3, backbone="resnet18", decode_head="pspp_head")
    with pytest.raises(TypeError, match="decode_head 'psp_head' has no option 'chanels'.*channels"):
        segzoo.build_model("encoder_decoder", num_classes=3, backbone="resnet18",
                           decode_head={"name": "psp_head", "chanels": 8})
    with pytest.raises(ValueError, match="decode_head takes no loss_weight"):
        segzoo.build_model("encoder_decoder", num_classes=3, backbone="resnet18",
                           decode_head={"name": "psp_head", "loss_weight": 2.0})
    with pytest.raises(ValueError, match="mapping with a 'name' key"):
        segzoo.build_model("encoder_decoder", num_classes=3, backbone={"output_stride": 8},
                           decode_head="psp_head")


def test_fpn_neck_between_backbone_and_heads():
    model = segzoo.build_model("encoder_decoder", num_classes=3, backbone="resnet18",
                               neck={"name": "fpn", "out_channels": 32},
                               decode_head={"name": "unet_head", "decoder_channels": (32, 16, 16, 8, 8)},
                               auxiliary_head={"name": "fcn_head", "in_index": -2})
    # the heads read the neck's levels: 32 channels at strides 4, 8, 16, 32
    assert model.auxiliary_head.convs[0][0].in_channels == 32
    out = model.train()(torch.randn(2, 3, 64, 72))
    assert out["out"].shape == out["aux"].shape == (2, 3, 64, 72)
    with pytest.raises(ValueError, match="one backbone level per stride"):
        segzoo.build_model("encoder_decoder", num_classes=3, decode_head="fcn_head",
                           backbone={"name": "resnet18", "output_stride": 8}, neck="fpn")


def test_describe_heads_lists_what_each_head_reads_and_accepts():
    table = describe_heads()
    assert set(table) == set(HEADS.names())
    for name, row in table.items():
        assert row["reads"] and row["paper"], name
        assert {"resnet18", "mobilenet_v2", "vgg16_bn", "tu-<name>"} <= set(row["backbones"]), name
        assert "name" not in row["options"] and "num_classes" not in row["options"]
    assert "low_level_stride" in table["deeplabv3plus_head"]["options"]
    # options change what fits: no registered backbone has a stride-64 feature
    assert fitting_backbones("deeplabv3plus_head", low_level_stride=64) == []
    assert "unet_encoder" in fitting_backbones("deeplabv3plus_head", low_level_stride=2)
    assert "vgg16" not in fitting_backbones("deeplabv3plus_head", low_level_stride=1)


# -- from config ------------------------------------------------------------------------------

COMPOSED = sorted((CONFIGS / "composed").glob("*_shapes-*.yaml"))


def test_three_worked_configs_exist_with_the_documented_parts():
    parts = {(c.model.kwargs["backbone"] if isinstance(c.model.kwargs["backbone"], str)
              else c.model.kwargs["backbone"]["name"], c.model.kwargs["decode_head"]["name"])
             for c in map(load_config, COMPOSED)}
    assert parts == {("mobilenet_v2", "psp_head"), ("resnet50", "deeplabv3plus_head"),
                     ("tu-resnet18", "unet_head")}
    docs = (CONFIGS.parent / "docs" / "models.md").read_text()
    for path in COMPOSED:
        assert f"configs/composed/{path.name}" in docs


# the composed shapes configs are trained through the engine by
# tests/config/test_config.py::test_every_shapes_config_trains_two_iterations (every *_shapes-* config)


def test_config_checks_nested_parts_and_keeps_the_old_aux_head_key():
    base = CONFIGS / "composed" / "psphead-fcnaux_mobilenetv2_shapes-64x64.yaml"
    with pytest.raises(ConfigError, match=r"model\.decode_head\.chanels.*did you mean "
                                          r"'model\.decode_head\.channels'"):
        load_config(base, ["model.decode_head.chanels=8"])
    with pytest.raises(ConfigError, match=r"model\.auxiliary_head\.loss_weight"):
        load_config(base, ["model.auxiliary_head.loss_weight=heavy"])
    with pytest.raises(ConfigError, match=r"model\.backbone\.name.*did you mean 'mobilenet_v2'"):
        load_config(base, ["model.backbone.name=mobilenet_v3"])
    old = load_config(CONFIGS / "pspnet" / "pspnet_resnet18_shapes-64x64.yaml",
                      ["model.aux_head=false"])
    assert old.model.kwargs["auxiliary_head"] is False and "aux_head" not in old.model.kwargs


def test_checkpoint_recorded_with_the_old_aux_head_key_fits_the_new_spelling(tmp_path):
    from segzoo.checkpoint.compat import check_model_fits
    from segzoo.errors import CheckpointError

    cfg = load_config(CONFIGS / "pspnet" / "pspnet_resnet18_shapes-64x64.yaml")
    old = {k: v for k, v in cfg.model.to_dict().items() if k != "auxiliary_head"}
    check_model_fits({"config": {"model": {**old, "aux_head": True}}}, cfg, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="auxiliary_head: False -> True"):
        check_model_fits({"config": {"model": {**old, "aux_head": False}}}, cfg, tmp_path / "old.pt")


def test_maskrcnn_takes_its_backbone_as_a_part_with_options():
    with torch.device("meta"):
        named = segzoo.build_model("maskrcnn", num_classes=4, backbone="resnet18")
        spec = segzoo.build_model("maskrcnn", num_classes=4, backbone={"name": "resnet18"})
        timm = segzoo.build_model("maskrcnn", num_classes=4,
                                  backbone={"name": "tu-resnet18", "out_indices": (1, 2, 3, 4)})
    assert {k: v.shape for k, v in named.state_dict().items()} == {
        k: v.shape for k, v in spec.state_dict().items()}
    assert timm.backbone.out_strides == (4, 8, 16, 32)
    with pytest.raises(ValueError, match="backbone 'mobilenet_v2' is not a ResNet"):
        segzoo.build_model("maskrcnn", num_classes=4, backbone={"name": "mobilenet_v2"}, variant="c4")


@pytest.mark.parametrize("name", ["fcn8s", "fcn", "deeplabv2", "deeplabv3", "deeplabv3plus", "pspnet", "unet"])
def test_named_models_take_their_backbone_as_a_part_with_options(name):
    # a tu- backbone's timm_kwargs reach timm through the paper-named builder, as through encoder_decoder
    backbone = {"name": "tu-resnet10t", "timm_kwargs": {"drop_path_rate": 0.1}}
    with torch.device("meta"):
        plain = segzoo.build_model(name, num_classes=3, backbone="tu-resnet10t")
        model = segzoo.build_model(name, num_classes=3, backbone=backbone)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()}
    assert not any(type(m).__name__ == "DropPath" for m in plain.backbone.modules())
    assert any(type(m).__name__ == "DropPath" for m in model.backbone.modules())


def test_named_models_refuse_their_own_arguments_inside_the_backbone_mapping():
    with pytest.raises(ValueError, match=r"pspnet: backbone option output_stride is pspnet's own argument; "
                                         r"pass output_stride=\.\.\. to pspnet"):
        segzoo.build_model("pspnet", num_classes=3, backbone={"name": "resnet18", "output_stride": 16})
    with pytest.raises(ValueError, match=r"unet: backbone option depth is unet's own argument"):
        segzoo.build_model("unet", num_classes=3, backbone={"name": "unet_encoder", "depth": 3})
    with pytest.raises(ValueError, match=r"fcn8s: backbone weights given twice"):
        segzoo.build_model("fcn8s", num_classes=3, backbone={"name": "vgg16", "weights": "a.pth"},
                           weights_backbone="b.pth")
    with torch.device("meta"):  # the original U-Net encoder as a mapping is the same model
        original = segzoo.build_model("unet", num_classes=3, backbone={"name": "unet_encoder"}, depth=3)
    assert len(original.backbone.out_channels) == 4


def test_config_of_a_named_model_takes_a_backbone_mapping_checked_like_a_part():
    base = CONFIGS / "pspnet" / "pspnet_resnet18_shapes-64x64.yaml"
    cfg = load_config(base, ["model.backbone={name: tu-resnet10t, timm_kwargs: {drop_path_rate: 0.1}}"])
    assert cfg.model.kwargs["backbone"] == {"name": "tu-resnet10t", "timm_kwargs": {"drop_path_rate": 0.1}}
    with torch.device("meta"):
        model = segzoo.build_model("pspnet", num_classes=3, **cfg.model.kwargs)
    assert any(type(m).__name__ == "DropPath" for m in model.backbone.modules())
    with pytest.raises(ConfigError, match=r"model\.backbone\.timm_kwarg.*did you mean 'model\.backbone\.timm_kwargs'"):
        load_config(base, ["model.backbone={name: tu-resnet10t, timm_kwarg: {}}"])
    with pytest.raises(ConfigError, match=r"model\.backbone\.name.*did you mean 'resnet18'"):
        load_config(base, ["model.backbone={name: resnet181}"])


def test_checkpoint_of_a_named_backbone_fits_the_same_backbone_as_a_mapping(tmp_path):
    from segzoo.checkpoint.compat import check_model_fits
    from segzoo.errors import CheckpointError

    base = CONFIGS / "pspnet" / "pspnet_resnet18_shapes-64x64.yaml"
    named = {"config": {"model": load_config(base).model.to_dict()}}
    assert named["config"]["model"]["backbone"] == "resnet18"
    check_model_fits(named, load_config(base, ["model.backbone={name: resnet18}"]), tmp_path / "a.pt")
    timm = load_config(base, ["model.backbone=tu-resnet10t"])
    with_kwargs = load_config(base, ["model.backbone={name: tu-resnet10t, timm_kwargs: {img_size: 64}}"])
    with pytest.raises(CheckpointError, match=r"model\.backbone\.timm_kwargs"):
        check_model_fits({"config": {"model": timm.model.to_dict()}}, with_kwargs, tmp_path / "a.pt")
