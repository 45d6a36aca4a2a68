"""Mask R-CNN: builder, torchvision's detection contract in train and eval, the paper's ablation
options, and the pieces reused from or checked against torchvision."""

import pytest
import torch
from torchvision.models.detection.roi_heads import maskrcnn_loss, project_masks_on_boxes
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import roi_pool

import segzoo
from segzoo.models.roi_heads import MultiScaleRoIPool, mask_loss, project_masks
from segzoo.registry import MODELS

# a CPU-sized model: narrow FPN and heads, 64 px images, few proposals and RoIs
TINY = {"min_size": 64, "max_size": 96, "fpn_channels": 32, "box_head_dim": 64, "mask_head_dim": 32,
        "anchor_sizes": [8, 16, 32, 64, 128], "rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 100,
        "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50, "rpn_batch_size_per_image": 32,
        "box_batch_size_per_image": 32, "box_detections_per_img": 20}


def tiny(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    args = {**TINY, **kw}
    if args.get("variant") == "c4":  # conv5 runs on every RoI: fewer of them
        args.update(anchor_sizes=[8, 16, 32], box_batch_size_per_image=8, rpn_post_nms_top_n_test=16)
    return segzoo.build_model("maskrcnn", num_classes=4, **{"backbone": "resnet18", **args})


def batch():
    """Two images of different sizes: two objects, and none."""
    masks = torch.zeros(2, 60, 64, dtype=torch.uint8)
    masks[0, 5:30, 4:30] = 1
    masks[1, 20:50, 30:60] = 1
    images = [torch.rand(3, 60, 64, generator=torch.Generator().manual_seed(0)),
              torch.rand(3, 48, 56, generator=torch.Generator().manual_seed(1))]
    targets = [{"boxes": torch.tensor([[4.0, 5, 30, 30], [30, 20, 60, 50]]), "labels": torch.tensor([1, 3]),
                "masks": masks},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                "masks": torch.zeros(0, 48, 56, dtype=torch.uint8)}]
    return images, targets


LOSSES = {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}


def test_registered_with_paper_and_instance_task():
    entry = MODELS.entry("maskrcnn")
    assert entry.meta["task"] == "instance" and "Mask R-CNN" in entry.meta["paper"]
    assert segzoo.list_models(task="instance") == ["keypointrcnn", "maskrcnn"]


@pytest.mark.parametrize("kw", [{}, {"variant": "c4"}, {"backbone": "mobilenet_v2"}, {"backbone": "tu-resnet18"}],
                         ids=["r18-fpn", "r18-c4", "mobilenetv2-fpn", "timm-fpn"])
def test_train_loss_dict_and_eval_detections(kw):
    model = tiny(**kw)
    assert model.task == "instance" and model.num_classes == 4
    images, targets = batch()
    model.train()
    losses = model(images, targets)
    assert set(losses) == LOSSES and all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.roi_heads.mask_predictor.parameters())
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for o, im in zip(out, images):
        n = len(o["boxes"])
        assert 0 < n <= TINY["box_detections_per_img"]  # a random model detects something at score 0.05
        assert o["boxes"].shape == (n, 4) and o["labels"].dtype == torch.int64 and o["scores"].shape == (n,)
        assert o["masks"].shape == (n, 1, *im.shape[-2:]) and 0 <= o["masks"].min() <= o["masks"].max() <= 1
        assert (o["boxes"][:, 2:] <= torch.tensor([im.shape[2], im.shape[1]])).all()  # input pixels
        assert set(o["labels"].tolist()) <= {1, 2, 3}


def test_c4_variant_has_conv5_as_its_roi_head():
    model = tiny(variant="c4")
    assert model.neck is None and isinstance(model.backbone.layer4, torch.nn.Identity)
    assert model.roi_heads.box_head.res5[0].conv1.in_channels == 256  # ResNet-18 conv5 on conv4
    assert model.roi_heads.box_roi_pool.output_size == (14, 14)
    assert model.roi_heads.mask_predictor.conv5_mask.out_channels == TINY["mask_head_dim"]
    # the RPN: 3 sizes x 3 ratios on the single stride-16 level
    assert model.rpn.anchor_generator.num_anchors_per_location() == [9]


def test_bad_inputs_and_options_raise_clear_errors():
    model = tiny().train()
    images, targets = batch()
    with pytest.raises(ValueError, match="list of \\(3, H, W\\) float images"):
        model([im.to(torch.uint8) for im in images], targets)
    with pytest.raises(ValueError, match="one target dict per image"):
        model(images)
    targets[0]["boxes"][1, 2] = 30.0  # x2 == x1
    with pytest.raises(ValueError, match="zero width or height"):
        model(images, targets)
    with pytest.raises(ValueError, match="not a ResNet"):
        tiny(variant="c4", backbone="mobilenet_v2")
    with pytest.raises(ValueError, match="FPN ablation"):
        tiny(variant="c4", mask_head="mlp")
    with pytest.raises(ValueError, match="per-class masks"):
        tiny(mask_loss="softmax", class_agnostic_mask=True)
    with pytest.raises(ValueError, match="one size per pyramid level"):
        tiny(anchor_sizes=[16, 32])


@pytest.mark.parametrize("kw", [{"roi_op": "pool"}, {"mask_loss": "softmax"}, {"mask_head": "mlp"},
                                {"class_agnostic_mask": True}, {"variant": "c4", "roi_op": "pool"}],
                         ids=["roipool", "softmax", "mlp-head", "class-agnostic", "c4-roipool"])
def test_each_ablation_option_trains(kw):
    model = tiny(**kw).train()
    images, targets = batch()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    first = None
    for _ in range(4):
        torch.manual_seed(1)  # the same RoI sampling every step: the loss of one fixed batch
        losses = model(images, targets)
        loss = sum(losses.values())
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
    assert set(losses) == LOSSES and torch.isfinite(loss) and float(loss.detach()) < first
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert out[0]["masks"].shape[1:] == (1, 60, 64)
    head = model.roi_heads
    if kw.get("roi_op") == "pool":
        assert isinstance(head.box_roi_pool, MultiScaleRoIPool) and isinstance(head.mask_roi_pool, MultiScaleRoIPool)
    if kw.get("class_agnostic_mask"):
        assert head.mask_predictor.mask_fcn_logits.out_channels == 1
    if kw.get("mask_head") == "mlp":
        assert head.mask_predictor.resolution == 28


def test_project_masks_and_sigmoid_loss_equal_torchvision_and_chunk():
    g = torch.Generator().manual_seed(0)
    gt = (torch.rand(40, 32, 48, generator=g) > 0.5).to(torch.uint8)
    xy = torch.rand(25, 2, generator=g) * 30
    boxes = torch.cat([xy, xy + 2 + torch.rand(25, 2, generator=g) * 15], 1)
    matched = torch.randint(0, 40, (25,), generator=g)
    ref = project_masks_on_boxes(gt, boxes, matched, 14)
    torch.testing.assert_close(project_masks(gt, boxes, matched, 14, chunk=7), ref)
    logits = torch.randn(25, 4, 14, 14, generator=g)
    labels = torch.randint(1, 4, (40,), generator=g)
    torch.testing.assert_close(mask_loss(logits, [boxes], [gt], [labels], [matched]),
                               maskrcnn_loss(logits, [boxes], [gt], [labels], [matched]))
    # softmax: a perfect multinomial prediction has (almost) no loss, a wrong one a large loss
    hard = (ref >= 0.5).long() * labels[matched][:, None, None]
    perfect = torch.nn.functional.one_hot(hard, 4).permute(0, 3, 1, 2).float() * 30
    assert float(mask_loss(perfect, [boxes], [gt], [labels], [matched], kind="softmax")) < 1e-6
    assert float(mask_loss(-perfect, [boxes], [gt], [labels], [matched], kind="softmax")) > 10


def test_project_masks_converts_only_matched_masks_a_chunk_at_a_time(monkeypatch):
    import segzoo.models.roi_heads.mask_roi_heads as mod

    seen = []
    real = mod.roi_align
    monkeypatch.setattr(mod, "roi_align", lambda x, *a, **k: seen.append(x.shape[0]) or real(x, *a, **k))
    gt = torch.zeros(500, 64, 64, dtype=torch.uint8)
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 100)
    matched = torch.arange(100) * 5  # 100 of the 500 masks
    project_masks(gt, boxes, matched, 28, chunk=32)
    assert seen == [32, 32, 32, 4]  # never more than 32 float masks, never the unmatched ones


def test_rcnn_transform_resizes_masks_like_torchvision():
    images, targets = batch()
    ours = tiny().transform.train()
    ref = GeneralizedRCNNTransform(128, 160, [0.4] * 3, [0.2] * 3).train()
    ours.min_size, ours.max_size, ours.image_mean, ours.image_std = (128,), 160, [0.4] * 3, [0.2] * 3
    a, ta = ours(images, [dict(t) for t in targets])
    b, tb = ref(images, [dict(t) for t in targets])
    torch.testing.assert_close(a.tensors, b.tensors)
    assert a.image_sizes == b.image_sizes and a.image_sizes[0][0] == 128
    for x, y in zip(ta, tb):
        assert torch.equal(x["masks"], y["masks"]) and torch.equal(x["boxes"], y["boxes"])


def test_multiscale_roipool_uses_roialigns_level_mapping():
    feats = {"0": torch.randn(1, 4, 32, 32), "1": torch.randn(1, 4, 16, 16)}
    boxes = [torch.tensor([[0.0, 0, 20, 20], [0, 0, 120, 120]])]  # small -> level 0, large -> level 1
    pool = MultiScaleRoIPool(["0", "1"], 3, canonical_scale=56, canonical_level=3)
    out = pool(feats, boxes, [(128, 128)])
    rois = torch.cat([torch.zeros(2, 1), boxes[0]], 1)
    torch.testing.assert_close(out[0], roi_pool(feats["0"], rois[:1], 3, 0.25)[0])
    torch.testing.assert_close(out[1], roi_pool(feats["1"], rois[1:], 3, 0.125)[0])
    assert pool.map_levels(boxes).tolist() == [0, 1]


def test_frozen_bn_and_trainable_layers_follow_torchvision(tmp_path):
    import torchvision
    from torchvision.ops import FrozenBatchNorm2d

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pt")
    model = tiny(weights_backbone=str(tmp_path / "r18.pt"))
    assert isinstance(model.backbone.bn1, FrozenBatchNorm2d)  # pretrained: frozen BN ...
    assert not model.backbone.layer1[0].conv1.weight.requires_grad  # ... and 3 trainable stages
    assert model.backbone.layer2[0].conv1.weight.requires_grad
    scratch = tiny()
    assert isinstance(scratch.backbone.bn1, torch.nn.BatchNorm2d) and scratch.backbone.conv1.weight.requires_grad
    with pytest.raises(ValueError, match="trainable_backbone_layers"):
        tiny(backbone="mobilenet_v2", trainable_backbone_layers=2)


def test_keep_size_predicts_at_the_input_size_without_resizing():
    model = tiny(keep_size=True, min_size=800, max_size=1333)  # sizes ignored with keep_size
    images, targets = batch()
    t = model.transform
    model.eval()
    resized, _ = t.resize(images[0])
    assert resized is images[0]
    listed, _ = t(images)  # only normalised and batched (padded to a multiple of 32)
    assert listed.image_sizes == [(60, 64), (48, 56)] and listed.tensors.shape[-2:] == (64, 64)
    with torch.no_grad():
        out = model(images)
    assert out[0]["masks"].shape[-2:] == (60, 64) and out[1]["masks"].shape[-2:] == (48, 56)
    model.train()
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
