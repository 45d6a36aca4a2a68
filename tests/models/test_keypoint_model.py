"""Keypoint R-CNN: built on several backbones, its losses (loss_keypoint included), images without
instances, bad targets, and the engine (train / eval / predict with skeletons) on shapes keypoints."""

import json

import numpy as np
import pytest
import torch
from conftest import CONFIGS
from helpers.version_marks import needs_keypoint_transforms
from PIL import Image

import segzoo
from segzoo.cli import main
from segzoo.config import load_config
from segzoo.data.shapes import ShapesDataset
from segzoo.engine import Trainer
from segzoo.engine.instance_task import training_targets
from segzoo.registry import MODELS

SHAPES = CONFIGS / "keypointrcnn" / "keypointrcnn_resnet18_shapes-64x64.yaml"
TINY = {"min_size": 64, "max_size": 64, "anchor_sizes": [8, 16, 32, 64, 128], "fpn_channels": 32,
        "box_head_dim": 64, "keypoint_head_dim": 32, "keypoint_head_convs": 2, "rpn_post_nms_top_n_train": 100,
        "rpn_post_nms_top_n_test": 50, "box_batch_size_per_image": 32, "box_detections_per_img": 10}
LOSSES = {"loss_classifier", "loss_box_reg", "loss_keypoint", "loss_objectness", "loss_rpn_box_reg"}


def shapes_batch(n=2):
    ds = ShapesDataset(keypoints=True, num_images=n)
    samples = [ds[i] for i in range(n)]
    images = [s["image"].float() / 255 for s in samples]
    targets, _ = training_targets([s["instances"] for s in samples], "cpu")
    return images, targets


def test_registered_as_an_instance_model_of_the_paper():
    entry = MODELS.entry("keypointrcnn")
    assert entry.meta["task"] == "instance" and "Mask R-CNN" in entry.meta["paper"]


@needs_keypoint_transforms
@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2", "tu-resnet18"])
def test_losses_are_finite_and_reach_the_keypoint_head(backbone):
    torch.manual_seed(0)
    model = segzoo.build_model("keypointrcnn", num_classes=4, backbone=backbone, num_keypoints=4, **TINY)
    assert model.task == "instance" and model.num_keypoints == 4
    images, targets = shapes_batch()
    assert targets[0]["keypoints"].shape == (len(targets[0]["boxes"]), 4, 3)
    losses = model(images, targets)
    assert set(losses) == LOSSES and all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    assert losses["loss_keypoint"] > 0
    sum(losses.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.roi_heads.keypoint_predictor.parameters())
    model.eval()
    with torch.no_grad():
        out = model(images)
    for o, im in zip(out, images):
        n = len(o["boxes"])
        assert 0 < n <= TINY["box_detections_per_img"]
        assert o["keypoints"].shape == (n, 4, 3) and o["keypoints_scores"].shape == (n, 4)
        xy = o["keypoints"][..., :2]
        assert bool((xy >= 0).all()) and bool((xy[..., 0] <= im.shape[2]).all())  # input pixels


@needs_keypoint_transforms
def test_an_image_without_instances_trains():
    torch.manual_seed(0)
    model = segzoo.build_model("keypointrcnn", num_classes=4, backbone="resnet18", num_keypoints=4, **TINY)
    images, targets = shapes_batch(1)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "keypoints": torch.zeros(0, 4, 3)}
    for batch in ([*images, torch.rand(3, 64, 64)], [torch.rand(3, 64, 64)]):
        tgts = [*targets, empty] if len(batch) == 2 else [empty]
        losses = model(batch, tgts)
        assert set(losses) == LOSSES and all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()  # no positive RoI: a zero keypoint loss still in the graph
    assert losses["loss_keypoint"] == 0


@needs_keypoint_transforms
def test_channels_last_model_trains_and_predicts_like_the_default_layout():
    torch.manual_seed(0)
    model = segzoo.build_model("keypointrcnn", num_classes=4, backbone="resnet18", num_keypoints=4, **TINY)
    images, targets = shapes_batch(2)
    torch.manual_seed(1)
    plain = model(images, targets)
    cl = model.to(memory_format=torch.channels_last)  # torchvision's keypoint loss .view()s the logits
    torch.manual_seed(1)
    losses = cl(images, targets)
    assert losses["loss_keypoint"] > 0
    assert all(torch.allclose(losses[k], plain[k], rtol=1e-4, atol=1e-5) for k in LOSSES)
    sum(losses.values()).backward()
    cl.eval()
    with torch.no_grad():
        out = cl(images)
    assert out[0]["keypoints"].shape[1:] == (4, 3)


@needs_keypoint_transforms
def test_targets_of_the_wrong_keypoint_count_are_refused():
    model = segzoo.build_model("keypointrcnn", num_classes=4, backbone="resnet18", num_keypoints=17, **TINY)
    images, targets = shapes_batch(1)
    with pytest.raises(ValueError, match="num_keypoints must equal the data's"):
        model(images, targets)
    with pytest.raises(ValueError, match="no 'keypoints'"):
        model(images, [{k: v for k, v in targets[0].items() if k != "keypoints"}])
    with pytest.raises(ValueError, match="num_keypoints"):
        segzoo.build_model("keypointrcnn", num_classes=2, num_keypoints=0)


TINY_RUN = ["data.train.dataset.num_images=4", "data.train.batch_size=2", "data.val.dataset.num_images=3",
            "data.val.batch_size=3", "train.max_iters=2", "train.log_interval=1", "train.checkpoint_interval=1",
            "train.num_vis=1", "train.device=cpu", "scheduler.warmup_iters=0", "model.fpn_channels=16",
            "model.box_head_dim=32", "model.keypoint_head_dim=16", "model.keypoint_head_convs=2"]


@needs_keypoint_transforms
def test_train_eval_predict_from_the_cli_with_keypoint_ap_and_skeletons(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(SHAPES), "--work-dir", str(run), "--set", *TINY_RUN]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("kp_AP", "kp_AP50", "kp_AP75", "bbox_AP", "mIoU"):
        assert key in metrics
    assert "mask_AP" not in metrics and metrics["num_images"] == 3
    assert (run / "checkpoints" / "best.pt").exists()  # best by kp_AP
    results = json.loads((run / "coco_results.json").read_text())
    assert all(len(r["keypoints"]) == 12 for r in results)
    ckpt = str(run / "checkpoints" / "last.pt")
    assert main(["eval", str(run / "config.yaml"), "--checkpoint", ckpt]) == 0
    assert "kp    AP" in capsys.readouterr().out
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(ShapesDataset(split="test", num_images=1)[0]["image"].permute(1, 2, 0).numpy()).save(images / "a.png")
    assert main(["predict", str(run / "config.yaml"), "--checkpoint", ckpt, "--input", str(images),
                 "--output", str(tmp_path / "pred"), "--set", "eval.score_threshold=0.0"]) == 0
    assert np.asarray(Image.open(tmp_path / "pred" / "overlays" / "a.png")).shape == (64, 64, 3)
    pred = json.loads((tmp_path / "pred" / "instances.json").read_text())
    assert pred["annotations"] and all(len(a["keypoints"]) == 12 for a in pred["annotations"])


def test_draw_instances_joins_keypoints_by_the_skeleton():
    from segzoo.visualize import draw_instances

    image = torch.zeros(3, 40, 40, dtype=torch.uint8)
    pred = {"boxes": torch.tensor([[5.0, 5.0, 35.0, 35.0]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9]),
            "keypoints": torch.tensor([[[10.0, 20.0, 1.0], [30.0, 20.0, 1.0], [20.0, 30.0, 0.0]]])}
    joined = draw_instances(image, pred, ["bg", "thing"], skeleton=[(0, 1)])
    points = draw_instances(image, pred, ["bg", "thing"])
    assert joined[20, 20].any() and not points[20, 20].any()  # the line between the two points
    assert points[20, 10].any() and points[20, 30].any() and not points[30, 20].any()  # v = 0 not drawn


@needs_keypoint_transforms
def test_overfits_a_few_shapes_images_to_keypoint_ap_above_half(tmp_path):
    """Four 64 px shapes images with keypoints, trained and scored on themselves by the engine
    (from scratch, ResNet-18 FPN, the shapes config's CPU-sized heads)."""
    same = "{name: shapes, split: train, num_images: 4, keypoints: true}"
    cfg = load_config(SHAPES, [f"data.train.dataset={same}", f"data.val.dataset={same}",
                               "data.train.transforms=[]", "data.train.batch_size=4", "data.val.batch_size=4",
                               "train.max_iters=80", "train.log_interval=20", "train.checkpoint_interval=0",
                               "train.num_vis=0", "train.device=cpu", "data.num_workers=0"])
    metrics = Trainer(cfg, tmp_path / "run", progress=False).train().metrics
    assert metrics["num_images"] == 4 and metrics["kp_AP"] > 0.5, metrics


@needs_keypoint_transforms
def test_joint_mask_and_keypoint_heads_add_the_keypoint_loss_to_unchanged_mask_rcnn_losses():
    import copy

    from segzoo.models.detectors.keypointrcnn import with_keypoint_head

    torch.manual_seed(0)
    plain = segzoo.build_model("maskrcnn", num_classes=4, backbone="resnet18", mask_head_dim=16,
                               **{k: v for k, v in TINY.items() if not k.startswith("keypoint")})
    joint = with_keypoint_head(copy.deepcopy(plain), 4, head_dim=16, num_convs=2)
    assert set(joint.loss_weights) == LOSSES | {"loss_mask"}
    images, targets = shapes_batch()
    torch.manual_seed(1)
    ref = plain(images, targets)
    torch.manual_seed(1)
    got = joint(images, targets)
    assert set(got) == set(ref) | {"loss_keypoint"} and torch.isfinite(got["loss_keypoint"])
    for k in ref:  # the same sampled RoIs: the box, mask and RPN losses are unchanged
        torch.testing.assert_close(got[k], ref[k])
    sum(got.values()).backward()
    assert all(p.grad is not None for p in joint.roi_heads.keypoint_predictor.parameters())
    joint.eval()
    with torch.no_grad():
        out = joint(images)
    n = len(out[0]["boxes"])
    assert out[0]["masks"].shape == (n, 1, 64, 64) and out[0]["keypoints"].shape == (n, 4, 3)
    with pytest.raises(ValueError, match="fpn"):
        with_keypoint_head(segzoo.build_model("maskrcnn", num_classes=4, backbone="resnet18", variant="c4"), 4)


@needs_keypoint_transforms
@pytest.mark.shared_data
def test_coco_mini_config_trains_on_person_keypoints(shared_data, tmp_path):
    path = CONFIGS / "keypointrcnn" / "keypointrcnn_resnet50_coco_mini-320.yaml"
    cfg = load_config(path, ["train.max_iters=1", "data.train.batch_size=2", "data.train.dataset.max_images=2",
                             "data.val.dataset.max_images=2", "train.device=cpu", "data.num_workers=0",
                             "model.min_size=128", "model.max_size=160", "train.num_vis=1", "scheduler.milestones=[1]"])
    result = Trainer(cfg, tmp_path / "run", progress=False).train()
    assert result.metrics["num_images"] == 2 and 0 <= result.metrics["kp_AP"] <= 1
    results = json.loads((tmp_path / "run" / "coco_results.json").read_text())
    assert results and all(r["category_id"] == 1 and len(r["keypoints"]) == 51 for r in results)


@needs_keypoint_transforms
def test_maskrcnn_keypoint_head_option_builds_the_joint_model():
    joint = segzoo.build_model("maskrcnn", num_classes=4, backbone="resnet18", mask_head_dim=16,
                               keypoint_head=True, num_keypoints=4,
                               **{k: v for k, v in TINY.items() if not k.startswith("keypoint")})
    assert joint.roi_heads.keypoint_predictor is not None and "loss_keypoint" in joint.loss_weights
    images, targets = shapes_batch()
    losses = joint(images, targets)
    assert torch.isfinite(losses["loss_keypoint"]) and "loss_mask" in losses


def test_engine_picks_best_checkpoint_by_the_models_key_metric():
    from segzoo.engine.tasks import build_task
    from segzoo.losses import LossSet

    model = segzoo.build_model("keypointrcnn", num_classes=2, backbone="resnet18", num_keypoints=4,
                               **{k: v for k, v in TINY.items() if k != "num_keypoints"})
    task = build_task(model, LossSet({"ce": torch.nn.CrossEntropyLoss()}), num_classes=2, ignore_index=255, class_names=["bg", "shape"],
                      loss_weights=None, eval_cfg=None, thing_classes=[1])
    assert task.key_metric == "kp_AP"
