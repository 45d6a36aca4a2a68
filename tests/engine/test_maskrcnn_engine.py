"""Mask R-CNN in the engine: the overfit check (box and mask AP > 0.5), the instance task (crowd and
degenerate boxes, empty images, 500 instances), train/eval/predict from the CLI, resume, bf16, DDP."""

import json
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import CONFIGS
from PIL import Image
from pycocotools.coco import COCO

import segzoo
from segzoo.checkpoint import load_checkpoint
from segzoo.cli import main
from segzoo.config import load_config
from segzoo.engine import Trainer
from segzoo.engine.instance_task import InstanceTask, training_targets
from segzoo.errors import ConfigError

SHAPES = CONFIGS / "maskrcnn" / "maskrcnn_resnet18_shapes-64x64.yaml"
# 2 iterations on 32 px images: the whole engine path in seconds
TINY = ["data.train.dataset.num_images=4", "data.train.dataset.size=[32, 32]", "data.train.batch_size=2",
        "data.val.dataset.num_images=3", "data.val.dataset.size=[32, 32]", "data.val.batch_size=2",
        "model.min_size=32", "model.max_size=32", "train.max_iters=2", "train.log_interval=1",
        "train.checkpoint_interval=1", "train.num_vis=1", "train.device=cpu", "scheduler.warmup_iters=0",
        "model.fpn_channels=16", "model.box_head_dim=32", "model.mask_head_dim=16", "data.num_workers=0"]


def test_overfits_a_few_shapes_images_to_box_and_mask_ap_above_half(tmp_path):
    """Four 64 px shapes images, trained and scored on themselves by the engine (from scratch,
    ResNet-18 FPN, 80 SGD iterations)."""
    same = "{name: shapes, split: train, num_images: 4, with_instances: true}"
    cfg = load_config(SHAPES, [f"data.train.dataset={same}", f"data.val.dataset={same}",
                               "data.train.transforms=[]", "data.train.batch_size=4", "data.val.batch_size=4",
                               "train.max_iters=80", "train.log_interval=20", "train.checkpoint_interval=0",
                               "train.num_vis=0", "train.device=cpu", "data.num_workers=0"])
    metrics = Trainer(cfg, tmp_path / "run", progress=False).train().metrics
    assert metrics["task"] == "instance" and metrics["num_images"] == 4
    assert metrics["bbox_AP"] > 0.5 and metrics["mask_AP"] > 0.5, metrics
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["mode"] == "train"]
    assert losses[-1] < 0.5 * losses[0]


def test_train_eval_predict_compare_from_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(SHAPES), "--work-dir", str(run), "--set", *TINY]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APs", "mask_AP", "mask_AP50", "mask_AP75",
                "mask_APs", "mask_APm", "mask_APl", "mIoU"):
        assert key in metrics
    assert metrics["task"] == "instance" and metrics["num_images"] == 3
    results = json.loads((run / "coco_results.json").read_text())  # COCO results format
    assert isinstance(results, list) and all({"image_id", "category_id", "bbox", "score", "segmentation"} <= set(r)
                                             for r in results)
    assert (run / "checkpoints" / "best.pt").exists()  # best by mask_AP
    assert list((run / "vis").glob("*.png"))
    ckpt = str(run / "checkpoints" / "last.pt")
    assert main(["eval", str(run / "config.yaml"), "--checkpoint", ckpt]) == 0
    out = capsys.readouterr().out
    assert "mask  AP" in out and "bbox  AP" in out and (run / "eval_last_coco_results.json").exists()
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(images / "a.png")
    assert main(["predict", str(run / "config.yaml"), "--checkpoint", ckpt, "--input", str(images),
                 "--output", str(tmp_path / "pred"), "--set", "eval.score_threshold=0.0"]) == 0
    assert np.asarray(Image.open(tmp_path / "pred" / "overlays" / "a.png")).shape == (40, 48, 3)
    assert np.asarray(Image.open(tmp_path / "pred" / "labels" / "a.png")).shape == (40, 48)
    coco = COCO(str(tmp_path / "pred" / "instances.json"))
    assert coco.cats[1]["name"] == "circle" and coco.imgs[1]["height"] == 40
    assert main(["compare", str(run), "--out", str(tmp_path / "table.md")]) == 0
    assert "| maskrcnn | instance | 2 |" in (tmp_path / "table.md").read_text()


def test_normalised_inputs_are_refused_for_mask_rcnn(tmp_path):
    cfg = load_config(SHAPES, [*TINY, "data.mean=[0.485, 0.456, 0.406]", "data.std=[0.229, 0.224, 0.225]"])
    with pytest.raises(ConfigError, match=r"data.mean: \[0, 0, 0\]"):
        Trainer(cfg, tmp_path / "run", progress=False)


def test_resume_continues_exactly(tmp_path):
    import shutil

    args = [*TINY, "train.max_iters=4", "train.checkpoint_interval=2", "train.keep_last=2", "data.val=null"]
    Trainer(load_config(SHAPES, args), tmp_path / "full", progress=False).train()
    # a run stopped after iteration 2: its folder holds the iteration-2 checkpoint as last.pt
    (tmp_path / "half" / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "checkpoints" / "iter_000002.pt", tmp_path / "half" / "checkpoints" / "last.pt")
    Trainer(load_config(SHAPES, args), tmp_path / "half", resume=True, progress=False).train()
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "half" / "checkpoints" / "last.pt")
    assert a["iteration"] == b["iteration"] == 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # RoI sampling RNG included


def _model(**kw):
    torch.manual_seed(0)
    args = {"min_size": 64, "max_size": 64, "fpn_channels": 16, "box_head_dim": 32, "mask_head_dim": 16,
            "anchor_sizes": [8, 16, 32, 64, 128], "rpn_post_nms_top_n_train": 100, "box_batch_size_per_image": 32}
    return segzoo.build_model("maskrcnn", num_classes=4, backbone="resnet18", **{**args, **kw}).train()


def _instances(boxes, labels, crowd, size=(64, 64)):
    from segzoo.data.instances import make_instances

    masks = torch.zeros(len(boxes), *size, dtype=torch.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, boxes):
        m[int(y1):max(int(y2), int(y1) + 1), int(x1):max(int(x2), int(x1) + 1)] = 1
    return make_instances(masks, labels, crowd, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))


def _task():
    return InstanceTask(loss_weights={}, num_classes=4, ignore_index=255, class_names=["bg", "a", "b", "c"])


def test_crowd_and_degenerate_boxes_are_dropped_with_a_counting_warning():
    inst = _instances([[2, 2, 20, 20], [30, 30, 30, 50], [5, 40, 25, 60], [40, 2, 60, 2]], [1, 2, 3, 1],
                      [0, 0, 1, 0])
    targets, dropped = training_targets([inst], "cpu")
    assert dropped == 2 and targets[0]["labels"].tolist() == [1]  # crowd dropped, not counted
    task, model = _task(), _model()
    batch = {"image": [torch.rand(3, 64, 64)], "instances": [inst], "meta": [{"dropped_boxes": 3}]}
    with pytest.warns(UserWarning, match=r"dropped 5 box\(es\) of zero width or height .*\(5 so far\)"):
        losses = task.losses(model, batch, torch.device("cpu"))
    assert all(torch.isfinite(v) for v in losses.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task.losses(model, {**batch, "meta": [{}]}, torch.device("cpu"))  # 7 so far: no new warning before 8


def test_images_without_annotations_train():
    empty = _instances([], [], [])
    batch = {"image": [torch.rand(3, 64, 64), torch.rand(3, 48, 64)],
             "instances": [empty, _instances([], [], [], size=(48, 64))], "meta": [{}, {}]}
    model = _model()
    losses = _task().losses(model, batch, torch.device("cpu"))
    assert float(losses["loss_mask"].detach()) == 0.0 and float(losses["loss_box_reg"].detach()) == 0.0
    sum(losses.values()).backward()
    assert model.rpn.head.cls_logits.weight.grad.abs().sum() > 0  # all anchors are negatives


def test_an_image_with_500_instances_trains_with_chunked_masks(monkeypatch):
    import segzoo.models.detectors.transform as tmod

    side, n = 256, 500
    idx = torch.arange(n)
    x1, y1 = (idx % 25) * 10 + 2, (idx // 25) * 12 + 2
    boxes = torch.stack([x1, y1, x1 + 7, y1 + 9], 1).tolist()
    inst = _instances(boxes, (idx % 3 + 1).tolist(), [0] * n, size=(side, side))
    model = _model(min_size=320, max_size=320)  # the model upsamples: masks are resized too
    seen = []
    real = tmod.F.interpolate
    def spy(x, *a, **k):  # torch's interpolate: also used for the image and the FPN
        if x.ndim == 4 and x.shape[1] == 1:  # a chunk of masks (k, 1, H, W)
            seen.append(x.shape[0])
        return real(x, *a, **k)

    monkeypatch.setattr(tmod.F, "interpolate", spy)
    batch = {"image": [torch.rand(3, side, side)], "instances": [inst], "meta": [{}]}
    losses = _task().losses(model, batch, torch.device("cpu"))
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values()) and float(losses["loss_mask"].detach()) > 0
    assert max(seen) <= 32 and sum(seen) == n  # all 500 masks resized, at most 32 as floats at once


def test_bf16_autocast_on_cpu_trains_and_predicts():
    model = _model()
    inst = _instances([[2, 2, 20, 20], [30, 30, 60, 50]], [1, 2], [0, 0])
    batch = {"image": [torch.rand(3, 64, 64)], "instances": [inst], "meta": [{}]}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = _task().losses(model, batch, torch.device("cpu"))
    sum(losses.values()).backward()
    assert all(torch.isfinite(v.float()) for v in losses.values())
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model([torch.rand(3, 64, 64)])
    assert out[0]["masks"].shape[-2:] == (64, 64)


@pytest.mark.shared_data
def test_coco128_config_trains_on_its_documented_split(shared_data, tmp_path):
    path = CONFIGS / "maskrcnn" / "maskrcnn_mobilenetv2_coco128-320.yaml"
    cfg = load_config(path, ["train.max_iters=1", "data.train.batch_size=2", "data.train.dataset.max_images=2",
                             "data.val.dataset.max_images=2", "train.device=cpu", "data.num_workers=0",
                             "model.min_size=128", "model.max_size=160", "train.num_vis=1", "scheduler.milestones=[1]"])
    assert cfg.data.val.dataset.kwargs["skip_images"] == 96
    result = Trainer(cfg, tmp_path / "run", progress=False).train()
    assert result.metrics["num_images"] == 2 and 0 <= result.metrics["mask_AP"] <= 1
    results = json.loads((tmp_path / "run" / "coco_results.json").read_text())
    coco_ids = {c["id"] for c in json.loads((shared_data / "coco128/annotations/instances_train2017.json")
                                            .read_text())["categories"]}
    assert {r["category_id"] for r in results} <= coco_ids  # COCO category ids, not labels


def test_torchrun_two_processes_gather_the_evaluation(tmp_path):
    import subprocess

    from helpers.children import CHILD, child_env, finish

    args = [*TINY, "data.val.dataset.num_images=5", "train.max_iters=1"]  # batch 2 per process
    ddp = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            str(CHILD), "train", str(SHAPES), "--work-dir", str(tmp_path / "ddp"), "--set", *args],
                           env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    code, out = finish(ddp)
    assert code == 0, out
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["num_images"] == 5  # shards of 3 and 2, gathered
    # one process scoring the same checkpoint gets the same COCO metrics and results
    ckpt = str(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert main(["eval", str(tmp_path / "ddp" / "config.yaml"), "--checkpoint", ckpt,
                 "--out", str(tmp_path / "one.json")]) == 0
    one = json.loads((tmp_path / "one.json").read_text())
    for key in ("bbox_AP", "bbox_AP50", "mask_AP", "mask_AP50", "mIoU"):
        assert one[key] == pytest.approx(metrics[key], abs=1e-9, nan_ok=True), key
    # ... and the same detections: rank 1 scores the saved BatchNorm statistics (rank 0's), not
    # those of its own last training batch (the AP of a 1-iteration model is ~0 either way)
    ddp_results = json.loads((tmp_path / "ddp" / "coco_results.json").read_text())
    one_results = json.loads((tmp_path / "one_coco_results.json").read_text())
    assert {r["image_id"] for r in ddp_results} == {r["image_id"] for r in one_results} == {1, 2, 3, 4, 5}
    for image_id in range(1, 6):
        ddp_scores, one_scores = ([r["score"] for r in results if r["image_id"] == image_id]
                                  for results in (ddp_results, one_results))
        assert sorted(ddp_scores) == pytest.approx(sorted(one_scores), abs=1e-6), image_id
