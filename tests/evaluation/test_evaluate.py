"""The scoring loop: original-size scoring, cross-task rows for semantic and instance models."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segzoo.config.schema import EvalConfig
from segzoo.data import ShapesDataset, build_dataloader, build_pipeline
from segzoo.errors import ConfigError, DataError
from segzoo.evaluation.evaluator import Scorer, evaluate, rescale_instances
from segzoo.metrics.cross_task import instances_to_semantic


class ColourModel(nn.Module):
    """A fixed semantic model: a 1x1 conv (pixelwise, so any resize commutes simply)."""

    task = "semantic"

    def __init__(self, k=4):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, k, 1)

    def forward(self, x):
        return self.conv(x)


class OracleInstanceModel(nn.Module):
    """A test-only instance model with torchvision's eval contract: model(list of images) ->
    list of {"boxes", "labels", "scores", "masks" (N, 1, H, W) float}, replaying given answers."""

    task = "instance"

    def __init__(self, answers):
        super().__init__()
        self.answers = list(answers)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images):
        assert isinstance(images, list) and images[0].ndim == 3
        out = [self.answers.pop(0) for _ in images]
        for img, o in zip(images, out):
            assert o["masks"].shape[-2:] == img.shape[-2:]
        return out


def shapes_loader(n=6, size=(64, 64), transforms=(), batch_size=3):
    ds = ShapesDataset(split="val", num_images=n, size=size, with_instances=True)
    ds.transforms = build_pipeline(list(transforms))
    return ds, build_dataloader(ds, batch_size=batch_size, shuffle=False)


def answers_from(ds, index_range):
    out = []
    for i in index_range:
        inst = ds[i]["instances"]
        n = len(inst["labels"])
        out.append({"boxes": inst["boxes"].as_subclass(torch.Tensor), "labels": inst["labels"],
                    "scores": torch.linspace(0.99, 0.6, n), "masks": inst["masks"].float().unsqueeze(1)})
    return out


def test_original_size_scoring_upsamples_logits_to_the_label(tmp_path):
    ds, loader = shapes_loader(transforms=[{"name": "resize", "size": [32, 32]}])
    model = ColourModel().eval()
    m = evaluate(model, loader, num_classes=4, ignore_index=255, progress=False)
    assert m["num_images"] == 6 and m["task"] == "semantic" and "mBIoU" in m
    # expected: logits at 32x32 upsampled (bilinear) to 64x64, compared with the 64x64 labels
    ds.transforms, raw = build_pipeline([{"name": "resize", "size": [32, 32]}]), ShapesDataset(
        split="val", num_images=6, size=(64, 64))
    cm = torch.zeros(4, 4, dtype=torch.long)
    for i in range(6):
        x = ds[i]["image"].as_subclass(torch.Tensor)[None]
        pred = F.interpolate(model(x), size=(64, 64), mode="bilinear", align_corners=False).argmax(1)[0]
        gt = raw[i]["mask"].as_subclass(torch.Tensor)
        cm += torch.bincount(gt.reshape(-1) * 4 + pred.reshape(-1), minlength=16).view(4, 4)
    assert int(cm.sum()) == 6 * 64 * 64
    expected_iou = cm.diag() / (cm.sum(0) + cm.sum(1) - cm.diag())
    for c, name in enumerate(["0", "1", "2", "3"]):
        assert m["IoU"][name] == pytest.approx(float(expected_iou[c]))
    low = evaluate(model, loader, num_classes=4, ignore_index=255, progress=False,
                   eval_cfg=EvalConfig(original_size=False, boundary_iou=False))
    assert "mBIoU" not in low and low["mIoU"] != pytest.approx(m["mIoU"], abs=1e-9)


def test_original_size_refuses_pipelines_that_crop():
    _, loader = shapes_loader(transforms=[{"name": "random_crop", "size": [32, 32]}])
    with pytest.raises(ConfigError, match="only resizes.*RandomCrop.*original_size: false"):
        evaluate(ColourModel(), loader, num_classes=4, ignore_index=255, progress=False)
    m = evaluate(ColourModel(), loader, num_classes=4, ignore_index=255, progress=False,
                 eval_cfg=EvalConfig(original_size=False))
    assert m["num_images"] == 6


def test_instance_model_gets_both_rows_and_perfect_answers_score_one(tmp_path):
    ds, loader = shapes_loader()
    model = OracleInstanceModel(answers_from(ds, range(6)))
    m = evaluate(model, loader, num_classes=4, ignore_index=255, progress=False,
                 class_names=ds.class_names, results_path=tmp_path / "res.json")
    assert m["task"] == "instance" and m["instance_source"] == "model" and m["semantic_source"] == "pasted"
    assert m["mask_AP"] == pytest.approx(1.0) and m["bbox_AP"] == pytest.approx(1.0)
    assert m["mIoU"] == pytest.approx(1.0) and m["mBIoU"] == pytest.approx(1.0)
    assert set(m["mask_AP_per_class"]) == {"circle", "square", "triangle"}
    assert {r["image_id"] for r in json.loads((tmp_path / "res.json").read_text())} == set(range(1, 7))


def test_instance_model_at_reduced_size_is_scored_at_the_original_size():
    ds, loader = shapes_loader(transforms=[{"name": "resize", "size": [32, 32]}])
    model = OracleInstanceModel(answers_from(ds, range(6)))  # answers at 32x32
    m = evaluate(model, loader, num_classes=4, ignore_index=255, progress=False)
    # rescaled 2x to the 64x64 ground truth: close to, but not exactly, perfect
    assert 0.5 < m["mask_AP50"] <= 1.0 and 0.7 < m["mIoU"] < 1.0
    assert m["num_images"] == 6


def test_semantic_model_cross_task_row_and_missing_instances_message():
    ds, loader = shapes_loader(n=4, batch_size=2)
    m = evaluate(ColourModel(), loader, num_classes=4, ignore_index=255, progress=False,
                 eval_cfg=EvalConfig(cross_task=True))
    assert m["instance_source"] == "components"
    for key in ("bbox_AP", "mask_AP", "mask_AP50", "mIoU"):
        assert 0.0 <= m[key] <= 1.0 or m[key] != m[key]
    plain = ShapesDataset(split="val", num_images=2, size=(64, 64))
    plain.transforms = build_pipeline([])
    with pytest.raises(DataError, match="no instance annotations.*with_instances: true"):
        evaluate(ColourModel(), build_dataloader(plain, batch_size=2, shuffle=False), num_classes=4,
                 ignore_index=255, progress=False, cross_task=True)


def test_scorer_with_perfect_semantic_logits_on_separated_objects():
    target = torch.zeros(40, 40, dtype=torch.long)
    target[2:10, 2:10] = 1
    target[20:30, 5:15] = 1
    target[25:35, 25:38] = 2
    from segzoo.data.instances import instances_from_id_map
    ids = torch.zeros_like(target)
    ids[2:10, 2:10], ids[20:30, 5:15], ids[25:35, 25:38] = 1, 2, 3
    gt = instances_from_id_map(ids, {1: 1, 2: 1, 3: 2})
    scorer = Scorer(num_classes=3, ignore_index=255, instance=True)
    scorer.add_semantic(10 * F.one_hot(target, 3).permute(2, 0, 1).float(), target, gt, image_id=1)
    m = scorer.compute()
    assert m["mIoU"] == 1.0 and m["mask_AP"] == pytest.approx(1.0) and m["bbox_AP"] == pytest.approx(1.0)


def test_rescale_instances_and_paste_back():
    pred = {"boxes": torch.tensor([[2.0, 4.0, 10.0, 8.0]]), "labels": torch.tensor([1]),
            "scores": torch.tensor([0.9]), "masks": torch.zeros(1, 1, 16, 16)}
    pred["masks"][0, 0, 4:8, 2:10] = 1
    big = rescale_instances(pred, (16, 16), (32, 48))
    assert big["boxes"].tolist() == [[6.0, 8.0, 30.0, 16.0]]
    sem = instances_to_semantic(big, (32, 48))
    ys, xs = torch.nonzero(sem, as_tuple=True)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (8, 15, 6, 29)


def test_scorer_counts_round_trip_for_summing_across_processes():
    ds, loader = shapes_loader(n=4, batch_size=2)
    model = ColourModel().eval()
    parts = []
    for batch in loader:  # two "ranks", one batch each
        s = Scorer(num_classes=4, ignore_index=255)
        s.update(model, batch, "cpu")
        parts.append(s.counts())
    merged = Scorer(num_classes=4, ignore_index=255)
    merged.load_counts(parts[0] + parts[1])
    whole = Scorer(num_classes=4, ignore_index=255)
    for batch in loader:
        whole.update(model, batch, "cpu")
    assert torch.equal(merged.counts(), whole.counts()) and merged.num_images == 4
    assert torch.equal(merged.cm.matrix, whole.cm.matrix) and merged.cm.matrix.sum() == 4 * 64 * 64
    assert torch.equal(merged.boundary.union, whole.boundary.union) and int(whole.boundary.union.sum()) > 0
    assert json.dumps(merged.compute()) == json.dumps(whole.compute())


def test_instance_rows_merge_across_processes_like_one_process():
    ds, loader = shapes_loader(n=6, batch_size=3)
    model = ColourModel().eval()
    shards = []
    for batch in loader:  # two "ranks", one batch each
        s = Scorer(num_classes=4, ignore_index=255, instance=True)
        s.update(model, batch, "cpu")
        shards.append(s)
    whole = Scorer(num_classes=4, ignore_index=255, instance=True)
    for batch in loader:
        whole.update(model, batch, "cpu")
    merged = shards[0]
    merged.load_counts(shards[0].counts() + shards[1].counts())
    merged.instances.merge([s.instances.state() for s in shards])
    assert sorted(merged.instances.images) == list(range(1, 7))  # index + 1: unique across shards
    a, b = merged.compute(), whole.compute()
    assert json.dumps(a) == json.dumps(b) and a["num_images"] == 6
