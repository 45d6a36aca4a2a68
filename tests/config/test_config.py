from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONFIGS, DEMO_CONFIG
from helpers.version_marks import needs_keypoint_transforms

from segzoo.config import load_config, load_file, load_raw_config, save_config
from segzoo.errors import ConfigError


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_base_inheritance_deep_merge_and_list_order(tmp_path):
    write(tmp_path / "a.yaml", {"train": {"max_iters": 10, "seed": 1}, "model": {"name": "fcn8s"}})
    write(tmp_path / "b.yaml", {"train": {"seed": 2, "log_interval": 5}})
    (tmp_path / "sub").mkdir()
    child = write(tmp_path / "sub" / "c.yaml",
                  {"_base_": ["../a.yaml", "../b.yaml"], "train": {"max_iters": 99}})
    data, sources = load_raw_config(child)
    assert data["train"] == {"max_iters": 99, "seed": 2, "log_interval": 5}
    assert data["model"] == {"name": "fcn8s"}
    assert sources["train.max_iters"].endswith("c.yaml")
    assert sources["train.seed"].endswith("b.yaml")
    assert sources["model.name"].endswith("a.yaml")


def test_base_as_string_and_delete_replaces_dict(tmp_path):
    write(tmp_path / "a.yaml", {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}})
    child = write(tmp_path / "b.yaml", {"_base_": "a.yaml",
                                         "optimizer": {"_delete_": True, "name": "sgd", "lr": 0.5}})
    data, _ = load_raw_config(child)
    assert data["optimizer"] == {"name": "sgd", "lr": 0.5}


def test_base_cycle_and_missing_base_are_reported(tmp_path):
    write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_raw_config(tmp_path / "a.yaml")
    write(tmp_path / "c.yaml", {"_base_": "nope.yaml"})
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_raw_config(tmp_path / "c.yaml")


def test_overrides_parse_yaml_values():
    cfg = load_config(DEMO_CONFIG, ["train.max_iters=7", "optimizer.lr=5e-3",
                                    "data.train.transforms=[]", "model.backbone=vgg16",
                                    "data.mean=[0.5, 0.5, 0.5]"])
    assert cfg.train.max_iters == 7
    assert cfg.optimizer.kwargs["lr"] == pytest.approx(5e-3)
    assert cfg.data.train.transforms == []
    assert cfg.model.kwargs["backbone"] == "vgg16"
    assert cfg.data.mean == [0.5, 0.5, 0.5]


def test_misspelled_key_names_key_file_and_closest(tmp_path):
    bad = write(tmp_path / "bad.yaml", f"_base_: {DEMO_CONFIG}\ntrain:\n  max_iter: 5\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    msg = str(exc.value)
    assert "'train.max_iter'" in msg and "bad.yaml" in msg and "'train.max_iters'" in msg


def test_misspelled_builder_kwarg_is_checked_against_signature():
    with pytest.raises(ConfigError) as exc:
        load_config(DEMO_CONFIG, ["model.bakbone=vgg16"])
    msg = str(exc.value)
    assert "'model.bakbone'" in msg and "--set" in msg and "'model.backbone'" in msg


def test_wrong_type_names_expected_type():
    with pytest.raises(ConfigError, match=r"'train.max_iters'.*must be int, got str 'many'"):
        load_config(DEMO_CONFIG, ["train.max_iters=many"])
    with pytest.raises(ConfigError, match=r"'model.fc_channels'.*must be int"):
        load_config(DEMO_CONFIG, ["model.fc_channels=1.5"])
    with pytest.raises(ConfigError, match=r"'data.train.batch_size'.*must be int, got bool"):
        load_config(DEMO_CONFIG, ["data.train.batch_size=true"])


def test_unknown_component_name_suggests_registered_one():
    with pytest.raises(ConfigError, match=r"'model.name'.*did you mean 'fcn8s'"):
        load_config(DEMO_CONFIG, ["model.name=fcn_8s"])
    with pytest.raises(ConfigError, match=r"'data.train.transforms.0.name'.*random_flip"):
        load_config(DEMO_CONFIG, ["data.train.transforms=[{name: random_flp}]"])


def test_engine_owned_and_required_keys(tmp_path):
    with pytest.raises(ConfigError, match="set data.ignore_index instead"):
        load_config(DEMO_CONFIG, ["data.train.dataset.ignore_index=0"])
    with pytest.raises(ConfigError, match="needs key 'root'"):
        load_config(DEMO_CONFIG, ["data.train.dataset={_delete_: true, name: folder, class_names: [a, b]}"])
    bad = write(tmp_path / "nomodel.yaml", {"train": {"max_iters": 1}})
    with pytest.raises(ConfigError, match="missing required key 'model'"):
        load_config(bad)


def test_malformed_override_and_yaml(tmp_path):
    with pytest.raises(ConfigError, match="key.subkey=value"):
        load_config(DEMO_CONFIG, ["train.max_iters"])
    bad = write(tmp_path / "broken.yaml", "model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        load_config(bad)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(DEMO_CONFIG, ["train.max_iters=3"])
    saved = save_config(cfg, tmp_path / "config.yaml")
    assert load_config(saved) == cfg


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.rglob("*.yaml") if "_base_" not in p.parts),
                         ids=lambda p: p.name)
def test_every_config_validates(path):
    cfg = load_config(path)
    assert cfg.model.name and cfg.data.train is not None


def test_backbone_weights_is_an_alias_of_weights_backbone():
    cfg = load_config(DEMO_CONFIG, ["model.backbone_weights=weights/x.safetensors"])
    assert cfg.model.kwargs["weights_backbone"] == "weights/x.safetensors"
    assert "backbone_weights" not in cfg.model.kwargs
    with pytest.raises(ConfigError, match="'model.backbone_weights'.*another name for model.weights_backbone"):
        load_config(DEMO_CONFIG, ["model.backbone_weights=a.pt", "model.weights_backbone=b.pt"])


def test_backbone_names_are_checked_including_timm_prefixes():
    cfg = load_config(DEMO_CONFIG, ["model={_delete_: true, name: deeplabv3plus, backbone: tu-resnet18}"])
    assert cfg.model.kwargs["backbone"] == "tu-resnet18"
    with pytest.raises(ConfigError, match="'model.backbone'.*did you mean 'resnet18'"):
        load_config(DEMO_CONFIG, ["model={_delete_: true, name: pspnet, backbone: resnet81}"])
    with pytest.raises(ConfigError, match="'model.backbone'.*did you mean 'tu-resnet18'"):
        load_config(DEMO_CONFIG, ["model={_delete_: true, name: pspnet, backbone: tu-resnet1}"])
    with pytest.raises(ConfigError, match="'model.output_stride'.*must be one of 8, 16, 32"):
        load_config(DEMO_CONFIG, ["model={_delete_: true, name: pspnet, output_stride: 4}"])


SHAPES_CONFIGS = sorted(CONFIGS.rglob("*_shapes-*.yaml"))
TINY_RUN = ["data.train.dataset.num_images=2", "data.train.dataset.size=[32, 32]",
            "data.train.batch_size=2", "data.val.dataset.num_images=2",
            "data.val.dataset.size=[32, 32]", "data.val.batch_size=2", "train.max_iters=2",
            "train.log_interval=1", "train.checkpoint_interval=0", "train.num_vis=1",
            "train.device=cpu", "scheduler.warmup_iters=0"]


def test_every_registered_model_has_a_shapes_and_a_real_data_config():
    from segzoo.registry import MODELS

    registered = set(MODELS.names(test_only=None))  # tests register test-only models
    models = {load_config(p).model.name for p in CONFIGS.rglob("*.yaml") if "_base_" not in p.parts}
    shapes = {load_config(p).model.name for p in SHAPES_CONFIGS}
    camvid = {load_config(p).model.name for p in CONFIGS.rglob("*_camvid-*.yaml")}
    coco = {load_config(p).model.name for p in [*CONFIGS.rglob("*_coco128-*.yaml"), *CONFIGS.rglob("*_coco_mini-*.yaml")]}
    semantic = set(MODELS.names(task="semantic", test_only=None))
    instance = set(MODELS.names(task="instance", test_only=None))
    assert registered == models == shapes == semantic | instance
    # instance models: coco128, or coco_mini's persons for keypoint models (CamVid has no instances)
    assert camvid == semantic and coco == instance


@pytest.mark.parametrize("path", [pytest.param(p, marks=needs_keypoint_transforms) if "keypoint" in p.name else p
                                  for p in SHAPES_CONFIGS], ids=lambda p: p.name)
def test_every_shapes_config_trains_two_iterations(path, tmp_path):
    from segzoo.engine import Trainer

    cfg = load_config(path, TINY_RUN)
    result = Trainer(cfg, tmp_path / "run", progress=False).train()
    assert result.metrics["iteration"] == 2 and 0.0 <= result.metrics["mIoU"] <= 1.0


@pytest.mark.shared_data
def test_deeplabv3plus_mobilenetv2_camvid_config_uses_the_shared_pretrained_weights(shared_data, tmp_path):
    from safetensors.torch import load_file

    from segzoo.engine import Trainer

    path = CONFIGS / "deeplabv3plus" / "deeplabv3plus_mobilenetv2_camvid-480x360.yaml"
    cfg = load_config(path, ["train.max_iters=1", "data.train.batch_size=2", "data.val=null",
                             "data.num_workers=0", "train.device=cpu",
                             "data.train.transforms=[{name: random_crop, size: [96, 128]}]"])
    import segzoo

    model = segzoo.build_model(cfg.model.name, num_classes=11, **cfg.model.kwargs)
    ref = load_file(str(shared_data / cfg.model.kwargs["weights_backbone"]))
    assert torch.equal(model.backbone.features[18][0].weight, ref["features.18.0.weight"])
    assert Trainer(cfg, tmp_path / "run", progress=False).train().metrics["iteration"] == 1


def test_delete_in_a_later_base_replaces_what_an_earlier_base_set(tmp_path):
    (tmp_path / "protocol.yaml").write_text("optimizer: {name: sgd, lr: 0.01, momentum: 0.9}\n")
    (tmp_path / "model.yaml").write_text("optimizer: {_delete_: true, name: adamw, lr: 0.0001}\n")
    (tmp_path / "run.yaml").write_text("_base_: [protocol.yaml, model.yaml]\nmodel: {name: fcn8s}\n")
    data, _ = load_file(tmp_path / "run.yaml")
    assert data["optimizer"] == {"name": "adamw", "lr": 0.0001}  # no momentum inherited, no marker left
    (tmp_path / "merge.yaml").write_text("_base_: [protocol.yaml]\noptimizer: {lr: 0.02}\n")
    assert load_file(tmp_path / "merge.yaml")[0]["optimizer"] == {"name": "sgd", "lr": 0.02, "momentum": 0.9}
