"""Pieces of the GPU check's scripts that are plain logic: the bf16/fp32 verdict of
gpu_parity.py, the CamVid pack (JPEG images, labels unchanged) of pack_camvid.py, gpu_train.py's
model filter and compiled twins."""

import re
import sys

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_parity  # noqa: E402
import gpu_train  # noqa: E402
import pack_camvid  # noqa: E402


def test_parity_verdict_compares_loss_levels_against_the_first_loss():
    fp32 = [2.0] + [1.0] * 19
    assert gpu_parity.verdict(fp32, [2.0] + [1.15] * 19)["verdict"] == "tracks"    # +7.5% of 2.0
    far = gpu_parity.verdict(fp32, [2.0] + [1.3] * 19)
    assert far["verdict"] == "diverges" and abs(far["gap"] - 0.15) < 1e-9
    assert gpu_parity.verdict(fp32, [2.0] * 19 + [float("nan")])["verdict"] == "diverges"
    assert gpu_parity.verdict(fp32, [2.0] + [0.75] * 19)["verdict"] == "diverges"  # both ways


def test_pack_keeps_labels_and_layout(tmp_path):
    assert pack_camvid.main(["--synthetic", "3", "--out", str(tmp_path)]) == 0
    root = tmp_path / "camvid"
    lines = (root / "val.txt").read_text().split()
    assert len(lines) == 6 and lines[0].endswith(".jpg") and lines[1].startswith("valannot/")
    label = np.asarray(Image.open(root / lines[1]))
    assert label.dtype == np.uint8 and label.max() <= 11  # copied, not re-encoded
    assert Image.open(root / lines[0]).format == "JPEG"
    from segzoo.data.camvid import CamVidDataset

    ds = CamVidDataset(root=str(root), split="val")
    assert len(ds) == 3 and ds[0]["image"].shape[-2:] == ds[0]["mask"].shape[-2:]
    assert not (tmp_path / "_synthetic_src").exists()


def test_deploy_check_of_a_detector_against_itself_and_a_perturbed_copy():
    """deploy_check_detection.check: a model against itself meets the criterion; a copy whose
    box regression is shifted does not (its boxes move, so detections go unmatched or differ)."""
    import copy

    import deploy_check_detection as dcd
    import torch

    import segzoo

    torch.manual_seed(0)
    model = segzoo.build_model("maskrcnn", num_classes=3, backbone="resnet18", min_size=64, max_size=64,
                               box_score_thresh=0.0).eval()
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    same = dcd.check(model, model, images, torch.device("cpu"), 100)
    assert same["detections"] > 0 and same["criterion_met"] and same["box_diff"] == 0 and same["images"] == 2
    moved = copy.deepcopy(model)
    with torch.no_grad():
        moved.roi_heads.box_predictor.bbox_pred.bias += 0.5  # every box shifted and rescaled
    diff = dcd.check(model, moved, images, torch.device("cpu"), 100)
    assert diff["box_diff"] > 0.1 or diff["unmatched_ref"] + diff["unmatched_got"] > 0


def test_gpu_train_compiled_twin_and_profile(tmp_path, capsys):
    import json

    from segzoo.models.layers.aten_resize import aten_resize_enabled
    from segzoo.models.layers.depthwise_taps import depthwise_taps_enabled

    with pytest.raises(SystemExit) as exc:  # a misspelt model name is an error, not an empty run
        gpu_train.main(["--device", "cpu", "--quick", "--models", "deeplabv3pluss", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "unknown --models deeplabv3pluss" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        gpu_train.main(["--device", "cpu", "--quick", "--compile-levers", "aten-resize", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--compile-levers needs --compile MODE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        gpu_train.main(["--device", "cpu", "--quick", "--compile", "backend:eagre", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--compile: unknown compile setting 'backend:eagre'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        gpu_train.main(["--device", "cpu", "--quick", "--compile", "default", "--compile-levers",
                        "aten-resize+depthwise-tap", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "unknown --compile-levers depthwise-tap; choose from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        gpu_train.main(["--device", "cpu", "--quick", "--dtypes", "fp32", "--compile", "backend:eager",
                        "--compile-dtypes", "bf16-cl", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "names some of --dtypes (fp32), got bf16-cl" in capsys.readouterr().err
    assert gpu_train.main(["--device", "cpu", "--quick", "--groups", "semantic", "--models", "deeplabv3plus",
                           "--dtypes", "fp32", "bf16", "fp16", "--compile", "backend:eager", "--compile-dtypes",
                           "bf16", "--compile-levers", "aten-resize+depthwise-taps", "--profile", "--cudnn-benchmark", "off",
                           "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "gpu_train.json").read_text())
    assert [(r["dtype"], r["cudnn_benchmark"]) for r in res["runs"]] == [
        ("fp32", False), ("bf16", False), ("fp16", False)]
    for run in res["runs"][::2]:  # fp32 and fp16: not in --compile-dtypes, eager only
        assert [m["compile"] for m in run["models"]] == [None]
    for run in res["runs"][1:2]:
        eager, compiled, aten = run["models"]
        assert [m["compile"] for m in run["models"]] == [None, "backend:eager", "backend:eager"]
        assert [m["levers"] for m in run["models"]] == [[], [], ["aten-resize", "depthwise-taps"]]
        assert compiled["label"] == "deeplabv3plus/resnet18 [compiled backend:eager]"
        assert aten["label"] == "deeplabv3plus/resnet18 [compiled backend:eager, aten-resize+depthwise-taps]"
        for twin in (compiled, aten):
            assert twin["peak_mem_mib"] is None and twin["img_per_s"] > 0
            # the twins start from the same weights: the same first loss up to dropout's draws
            assert abs(eager["losses"][0] - twin["losses"][0]) < 0.05
            # entered in each profiled step, whether or not its row is among the top 12 by self time
            entered = re.search(r"Torch-Compiled Region entered (\d+) times in 2 calls", twin["profile"])
            assert entered and int(entered.group(1)) >= 2
        assert "aten::convolution_backward" in eager["profile"] and "Torch-Compiled" not in eager["profile"]
        # the lever twin's profile shows both levers at work: ATen's resize as segzoo's operators,
        # and fewer convolutions than the plain twin (DeepLab v3+'s depthwise ones as multiply-adds)
        assert compiled["op_calls"]["segzoo::bilinear_resize"] == 0 and compiled["levers_engaged"] == {}
        assert aten["op_calls"]["segzoo::bilinear_resize"] > 0 and aten["op_calls"]["segzoo::bilinear_resize_backward"] > 0
        assert 0 < aten["op_calls"]["aten::convolution"] < compiled["op_calls"]["aten::convolution"]
        assert {k: e["engaged"] for k, e in aten["levers_engaged"].items()} == {
            "aten-resize": True, "depthwise-taps": True}
    # a lever twin's steps (and its profiled ones) run with its switches on, the others not
    both = gpu_train.with_levers(lambda: (aten_resize_enabled(), depthwise_taps_enabled()),
                                 ("aten-resize", "depthwise-taps"))
    assert both() == (True, True) and (aten_resize_enabled(), depthwise_taps_enabled()) == (False, False)
    assert gpu_train.with_levers(aten_resize_enabled, ()) is aten_resize_enabled
    # a lever that changed nothing is said so, and one with no plain twin to compare with too
    rows = [{"candidate": {"name": "m"}, "compile": "default", "levers": [],
             "op_calls": {"segzoo::bilinear_resize": 0, "segzoo::bilinear_resize_backward": 0, "aten::convolution": 9}},
            {"candidate": {"name": "m"}, "compile": "default", "levers": ["aten-resize", "depthwise-taps"],
             "op_calls": {"segzoo::bilinear_resize": 2, "segzoo::bilinear_resize_backward": 0, "aten::convolution": 9}}]
    assert {k: e["engaged"] for k, e in gpu_train.lever_evidence(rows[1], rows).items()} == {
        "aten-resize": False, "depthwise-taps": False}
    assert gpu_train.lever_evidence(rows[1], rows[1:])["depthwise-taps"]["engaged"] is None
    md = (tmp_path / "gpu_train.md").read_text()
    assert "`deeplabv3plus/resnet18 [compiled backend:eager]` bf16: " in md and "x its eager twin" in md
    assert "`deeplabv3plus/resnet18 [compiled backend:eager, aten-resize+depthwise-taps]` bf16: " in md
    assert ("`deeplabv3plus/resnet18 [compiled backend:eager, aten-resize+depthwise-taps]` bf16: aten-resize "
            "engaged (segzoo::bilinear_resize ") in md and "; depthwise-taps engaged (aten::convolution " in md
    assert md.count("### `deeplabv3plus/resnet18") == 5 and "cuDNN autotuning off;" in md
    assert "| semantic | 32x64 | 2 | `deeplabv3plus/resnet18` | fp16 |" in md
    # the default, the engine's auto: autotuning for the semantic group's fixed shapes only
    runs = [{"group": "semantic", "cudnn_benchmark": True}, {"group": "instance", "cudnn_benchmark": False}]
    assert gpu_train.autotuning(runs) == "on for semantic, off for instance"


def test_gpu_train_pairs_start_from_torchvision_weights_and_train_alike():
    """The instance pair after copy_pair: segzoo's Mask R-CNN R50-FPN gives torchvision's losses
    step for step (the RoI samplers' draws made equal by reseeding), so the timing compares code."""
    import torch

    from segzoo.bench.timing import training_step

    group = gpu_train.groups(quick=True)[1]
    entries = [(gpu_train.sized(c, group["size"]), None) for c in group["candidates"]]
    models = [gpu_train.build(c, group, torch.device("cpu"), False) for c, _ in entries]
    assert gpu_train.copy_pair(group, entries, models) == (
        "maskrcnn_resnet50_fpn -> maskrcnn/resnet50 (from_torchvision:maskrcnn)")
    assert gpu_train.copy_pair(group, entries[1:], models[1:]) is None  # torchvision's alone: nothing to copy
    images = gpu_train.images_for(group, torch.device("cpu"))
    curves = []
    for model in models:
        torch.manual_seed(0)
        step = training_step(model, images, None, group["num_classes"])
        curves.append([step().item() for _ in range(3)])
    ours, theirs = curves
    assert ours == pytest.approx(theirs, rel=1e-5) and ours[2] < ours[0]


def test_gpu_train_model_built_alone_gets_the_copied_weights():
    """peak_memory builds each model alone: segzoo's twin still starts from torchvision's weights."""
    import torch

    from segzoo.models.convert import from_torchvision

    group = gpu_train.groups(quick=True)[1]
    ours_c, tv_c = (gpu_train.sized(c, group["size"]) for c in group["candidates"])
    cpu = torch.device("cpu")
    ours = gpu_train.build_initial(ours_c, group, cpu, False).state_dict()
    expected = from_torchvision(gpu_train.build(tv_c, group, cpu, False).state_dict(), arch="maskrcnn")
    assert ours.keys() == expected.keys() and all(torch.equal(ours[k], expected[k]) for k in ours)
    fresh = gpu_train.build(ours_c, group, cpu, False).state_dict()  # seed 0, not torchvision's init
    assert not all(torch.equal(fresh[k], expected[k]) for k in fresh)
    tv = gpu_train.build_initial(tv_c, group, cpu, False).state_dict()  # the source: built as is
    assert all(torch.equal(tv[k], v) for k, v in gpu_train.build(tv_c, group, cpu, False).state_dict().items())
