"""segzoo.bench.hostsync: operator and host-sync counts, hand-computed, and per detector phase."""

from __future__ import annotations

import json
import sys

import torch
from conftest import REPO
from torch import Tensor, nn

import segzoo
from segzoo.bench.hostsync import OpCounter, count_detector, totals


def counted(fn, inference: bool = False) -> dict:
    counter = OpCounter()
    with (torch.inference_mode() if inference else torch.no_grad()), counter:
        fn()
    c = counter.counts.get("other")
    return {"operators": c.operators if c else 0, "syncs": dict(c.syncs) if c else {}}


def test_each_kind_of_host_read_back_is_one_sync_and_device_side_code_is_none():
    x = torch.arange(6.0)
    mask = x > 2
    for inference in (False, True):  # inference mode dispatches composite ops (item, where) undecomposed
        assert sum(counted(lambda: x.item() if x.numel() == 1 else x[0].item(), inference)["syncs"].values()) == 1
        assert sum(counted(lambda: int(x[1]), inference)["syncs"].values()) == 1
        assert sum(counted(lambda: bool(x[1] > 0), inference)["syncs"].values()) == 1
        assert sum(counted(lambda: x[mask], inference)["syncs"].values()) == 1
        assert sum(counted(lambda: torch.where(mask), inference)["syncs"].values()) == 1
        assert sum(counted(lambda: x.nonzero(), inference)["syncs"].values()) == 1
        assert counted(lambda: x.tolist(), inference)["syncs"] == {"tolist": 1}
        assert counted(lambda: x.numpy(), inference)["syncs"] == {"numpy": 1}
        # no read-back: arithmetic, where with three arguments, integer indexing, masked_fill, topk
        for fn in (lambda: x * 2 + 1, lambda: torch.where(mask, x, -x), lambda: x[torch.tensor([0, 2])],
                   lambda: x.masked_fill(mask, 0), lambda: x.topk(2)):
            assert counted(fn, inference)["syncs"] == {}
    assert counted(lambda: x * 2 + 1)["operators"] == 2
    assert counted(lambda: x.view(2, 3).t()[0])["operators"] == 0  # views launch no kernel


def test_phases_take_their_own_operators_and_the_counter_leaves_nothing_behind():
    class Inner(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return (x * 2).sum()

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()

        def helper(self, x: Tensor) -> list:
            return x.tolist()

        def forward(self, x: Tensor) -> Tensor:
            y = self.inner(x + 1)
            self.helper(y)
            return y - 1

    model, tolist, x = Outer(), Tensor.tolist, torch.ones(3)
    counter = OpCounter({"outer": model, "inner": model.inner})
    with torch.no_grad(), counter:
        counter.phase_method(model, "helper", "helper")
        out = model(x)
    assert out.item() == 11.0  # hooks did not replace outputs
    assert {k: (v.operators, v.total_syncs) for k, v in counter.counts.items()} == \
        {"outer": (2, 0), "inner": (2, 0), "helper": (0, 1)}
    assert totals(counter.counts).operators == 4
    assert Tensor.tolist is tolist and "helper" not in vars(model)  # patches undone
    assert not model._forward_hooks and not model.inner._forward_pre_hooks  # hooks removed


def test_count_detector_shows_the_batched_paste_removes_the_paste_syncs():
    torch.manual_seed(0)
    model = segzoo.build_model("maskrcnn", num_classes=4, backbone="resnet18", min_size=64, max_size=96,
                               fpn_channels=32, box_head_dim=64, mask_head_dim=16,
                               box_score_thresh=0.0, box_detections_per_img=20)
    image = [torch.rand(3, 64, 96)]
    counts = {}
    for mode in ("loop", "batched"):
        model.transform.mask_paste = mode
        counts[mode] = count_detector(model, image)
    loop, batched = counts["loop"], counts["batched"]
    assert list(loop)[:3] == ["transform", "backbone", "other"]
    assert {"rpn", "rpn.filter_proposals", "roi_heads.postprocess_detections", "mask_head",
            "transform.postprocess"} <= set(loop)
    assert loop["backbone"].total_syncs == 0 and loop["backbone"].operators > 20
    assert loop["rpn.filter_proposals"].syncs["nms"] >= 1  # NMS reads its mask back on a GPU
    assert loop["transform.postprocess"].total_syncs >= 10 * 20  # about a dozen per detection
    assert batched["transform.postprocess"].total_syncs == 0
    assert batched["transform.postprocess"].operators < loop["transform.postprocess"].operators / 5
    assert model.transform.postprocess.__func__ is type(model.transform).postprocess  # unpatched


def test_detector_ops_script_dry_run_writes_its_tables(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import detector_ops

    assert detector_ops.main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "detector_ops.json").read_text())
    rows = {r["model"]: r for r in res["rows"]}
    assert len(rows) == 4 and all(r["detections"] == 100 for r in rows.values())
    loop, batched = rows["segzoo, torchvision's paste and NMS"], rows["segzoo, batched paste"]
    grouped = rows["segzoo, batched paste + grouped NMS (GPU default)"]
    assert loop["host_syncs"] > 10 * batched["host_syncs"] and grouped["host_syncs"] < batched["host_syncs"]
    assert loop["phases"]["transform.postprocess"]["host_syncs"] > 1000
    assert "| transform.postprocess |" in (tmp_path / "detector_ops.md").read_text()
    # Keypoint R-CNN: the heatmap decoding reads the RoI sizes back once, torchvision's twice per RoI
    assert detector_ops.main(["--device", "cpu", "--quick", "--arch", "keypointrcnn", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "keypointrcnn" / "detector_ops.json").read_text())["rows"]
    ours, theirs = rows[1], rows[2]
    assert theirs["model"] == "torchvision keypointrcnn_resnet50_fpn" and min(ours["detections"], theirs["detections"]) > 20
    assert ours["phases"]["roi_heads"]["host_syncs"] == 1
    assert theirs["phases"]["roi_heads"]["host_syncs"] == 2 * theirs["detections"]
