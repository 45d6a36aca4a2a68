import pytest

import segzoo
from segzoo.errors import RegistryError
from segzoo.registry import Registry


def test_register_get_build_and_meta():
    reg = Registry("widget")

    @reg.register("blue_widget", task="semantic")
    def blue_widget(*, size: int = 1):
        return ("blue", size)

    @reg.register()
    def red_widget():
        return "red"

    assert reg.get("blue_widget") is blue_widget
    assert reg.build("blue_widget", size=3) == ("blue", 3)
    assert reg.names() == ["blue_widget", "red_widget"]
    assert reg.names(task="semantic") == ["blue_widget"]
    assert "red_widget" in reg and len(reg) == 2


def test_unknown_name_lists_close_matches():
    reg = Registry("model")
    for name in ("fcn8s", "fcn16s", "unet"):
        reg.register(name)(lambda: None)
    with pytest.raises(RegistryError) as exc:
        reg.get("fcn8")
    msg = str(exc.value)
    assert "unknown model 'fcn8'" in msg and "did you mean 'fcn8s'" in msg
    assert "fcn16s, fcn8s, unet" in msg  # the full list
    assert isinstance(exc.value, KeyError)


def test_duplicate_and_uppercase_names_are_refused():
    reg = Registry("thing")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: 2)
    with pytest.raises(ValueError, match="lower case"):
        reg.register("FCN")(lambda: 3)


def test_config_params_skip_positional_only_and_detect_var_kwargs():
    reg = Registry("optimizer")

    @reg.register("opt")
    def opt(params, /, *, lr: float = 0.1, momentum: float = 0.9):
        return params

    @reg.register("anything")
    def anything(**kwargs):
        return kwargs

    assert list(reg.config_params("opt")) == ["lr", "momentum"]
    assert reg.config_params("anything") is None


def test_public_api_lists_and_builds():
    assert {"fcn8s", "fcn16s", "fcn32s"} <= set(segzoo.list_models())
    assert {"vgg16", "vgg16_bn"} <= set(segzoo.list_backbones())
    assert {"shapes", "camvid", "folder"} <= set(segzoo.list_datasets())
    semantic, instance = segzoo.list_models(task="semantic"), segzoo.list_models(task="instance")
    assert semantic == sorted(semantic) and instance == sorted(instance)
    assert sorted(semantic + instance) == segzoo.list_models() and not set(semantic) & set(instance)
    assert {"fcn8s", "pspnet", "encoder_decoder"} <= set(semantic) and "maskrcnn" in instance
    with pytest.raises(RegistryError, match="did you mean 'vgg16'"):
        segzoo.build_model("fcn8s", num_classes=3, backbone="vgg61")


def test_prefix_families_resolve_everywhere():
    reg = Registry("backbone")

    @reg.register("plain")
    def plain(*, weights: str | None = None):
        return "plain"

    def family(name, /, *, weights: str | None = None, output_stride: int = 32):
        return (name, weights, output_stride)

    reg.register_prefix("fam:", family, known=lambda n: n in {"alpha", "beta"},
                        suggest=lambda n: ["alpha"], paper="somewhere")
    assert reg.build("fam:alpha", output_stride=8) == ("alpha", None, 8)
    assert reg.entry("fam:beta").meta == {"paper": "somewhere", "prefix": "fam:"}
    assert list(reg.config_params("fam:alpha")) == ["weights", "output_stride"]
    assert "fam:alpha" in reg and "fam:gamma" not in reg and "plain" in reg and 3 not in reg
    assert reg.names() == ["plain"] and reg.prefixes() == ["fam:"]
    assert reg.prefix_meta("fam:") == {"paper": "somewhere"}
    with pytest.raises(RegistryError, match="'fam:alpa'.*did you mean 'fam:alpha'"):
        reg.get("fam:alpa")
    with pytest.raises(RegistryError, match="Prefixes: fam:<name>"):
        reg.get("plane")
    with pytest.raises(ValueError, match="already registered"):
        reg.register_prefix("fam:", family)


def test_timm_prefixes_are_registered_backbones():
    from segzoo.registry import BACKBONES

    assert {"timm:", "tu-"} <= set(BACKBONES.prefixes())
    assert "tu-resnet18" in BACKBONES and "timm:efficientnet_b0" in BACKBONES
    assert BACKBONES.entry("tu-resnet18").meta["prefix"] == "tu-"
