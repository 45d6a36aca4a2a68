"""Mask R-CNN to ONNX for images of any size: the exported graph run by onnxruntime gives PyTorch's
detections (matched boxes, labels, scores, full-image masks) at sizes other than the export size,
empty outputs of the right shapes for an image without detections, and the eval resize the graph
traces equals torchvision's eager one. One export for the module (slow), small random models."""

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

import segzoo
from segzoo.errors import ExportError
from segzoo.models.detectors.transform import traced_resize

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SIZES = [(97, 131), (121, 77), (33, 200)]  # the export is traced at 64x80
DATASET = Path(__file__).resolve().parents[2] / "configs" / "_base_" / "datasets" / "shapes-64x64.yaml"
TINY = {"min_size": 64, "max_size": 96, "fpn_channels": 32, "box_head_dim": 64, "mask_head_dim": 32,
        "anchor_sizes": [8, 16, 32, 64, 128], "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50,
        "box_detections_per_img": 20, "box_score_thresh": 0.6}


def tiny_maskrcnn() -> torch.nn.Module:
    """Random ResNet-18 Mask R-CNN whose heads are made confident: scores spread over 0..1 (a plain
    grey image stays below the 0.6 threshold, structured images do not) and masks not flat at 0.5."""
    torch.manual_seed(0)
    model = segzoo.build_model("maskrcnn", num_classes=4, backbone="resnet18", **TINY).eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(20)
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(20)
        model.roi_heads.mask_predictor.mask_fcn_logits.bias.fill_(1.0)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from segzoo.export import export_onnx

    model = tiny_maskrcnn()
    path = tmp_path_factory.mktemp("det") / "maskrcnn.onnx"
    result = export_onnx(model, path, (64, 80), sizes=SIZES)  # verifies at SIZES, raises on a mismatch
    return model, path, result


def test_export_onnx_exports_mask_rcnn_that_matches_pytorch_at_other_sizes(exported):
    model, path, result = exported
    assert result["outputs"] == ("boxes", "labels", "scores", "masks")
    assert [tuple(s) for s in result["sizes"]] == SIZES
    for row in result["rows"]:
        assert row["torch_detections"] > 0  # the check compared real detections
        assert row["detections"] == row["torch_detections"] == row["onnx_detections"]
        assert row["box_diff"] <= 0.5 and row["mask_iou_decided"] >= 0.99 and row["score_diff"] < 1e-3
    assert result["max_abs_diff"] == max(r["box_diff"] for r in result["rows"])


def test_image_without_detections_gives_empty_outputs_of_the_right_shapes(exported):
    from segzoo.export.detection import OUTPUTS, run_onnx, verify_detection
    from segzoo.export.onnx import onnxruntime_session

    model, path, _ = exported
    grey = torch.full((3, 59, 83), 0.5)
    with torch.no_grad():
        ref = model([grey])[0]
    assert len(ref["boxes"]) == 0
    got = run_onnx(onnxruntime_session(path), grey, OUTPUTS)
    assert got["boxes"].shape == (0, 4) and got["labels"].shape == (0,) and got["scores"].shape == (0,)
    assert got["masks"].shape == (0, 1, 59, 83)
    assert [got[k].dtype for k in OUTPUTS] == [np.float32, np.int64, np.float32, np.float32]
    assert verify_detection(model, path, [grey])[0]["detections"] == 0


def test_onnxruntime_detector_returns_the_eval_output_of_the_model(exported):
    from segzoo.export.detection import compare_detections
    from segzoo.export.runtime import OnnxRuntimeDetector, load_onnx_model, write_metadata

    model, path, _ = exported
    write_metadata(path, {"num_classes": 4, "class_names": ["bg", "a", "b", "c"], "palette": [[0, 0, 0]] * 4})
    runner, meta = load_onnx_model(None, path)
    assert isinstance(runner, OnnxRuntimeDetector) and runner.task == "instance" and meta["num_classes"] == 4
    from segzoo.export.detection import example_image

    images = [example_image(90, 70, seed=7), example_image(45, 101, seed=8)]  # a batch of two sizes
    with torch.no_grad():  # one image at a time, as the graph runs (a PyTorch batch pads to its largest)
        refs = [model([image])[0] for image in images]
    outs = runner(images)
    assert len(outs) == 2
    for image, ref, out in zip(images, refs, outs):
        assert set(out) == set(ref) and out["masks"].shape[-2:] == image.shape[-2:]
        cmp = compare_detections({k: v.numpy() for k, v in ref.items()}, {k: v.numpy() for k, v in out.items()})
        assert cmp["detections"] == len(ref["boxes"]) > 0 and cmp["box_diff"] <= 0.5


def test_verification_fails_with_the_largest_difference(exported):
    from segzoo.export.detection import example_image, verify_detection

    model, path, _ = exported
    moved = copy.deepcopy(model)
    with torch.no_grad():  # PyTorch's boxes move right by 10% of their width: the graph's do not
        moved.roi_heads.box_predictor.bbox_pred.bias.view(-1, 4)[:, 0] += 1.0
    with pytest.raises(ExportError, match=r"differ from PyTorch: largest: ") as err:
        verify_detection(moved, path, [example_image(97, 131, seed=1)])
    assert re.search(r"box difference [0-9.]+ px \(> 0.5\) at 97x131", str(err.value))


def test_refuses_instance_models_that_are_not_rcnn_detectors(tmp_path):
    from segzoo.export import export_onnx

    class Det(torch.nn.Module):
        task = "instance"

    with pytest.raises(ExportError, match="only semantic models and R-CNN detectors"):
        export_onnx(Det(), tmp_path / "x.onnx", (32, 32))


@pytest.mark.parametrize("size", [(97, 131), (121, 77), (33, 200), (64, 64), (360, 480), (7, 5)])
@pytest.mark.parametrize("limits", [(64, 96), (800, 1333)])
def test_traced_resize_equals_torchvision_eval_resize(size, limits):
    """The resize the graph traces (output size from the input's shape in float64) gives exactly
    torchvision's eager result, so the exported graph sees the pixels PyTorch sees."""
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(0))
    ref, _ = GeneralizedRCNNTransform(limits[0], limits[1], [0.0] * 3, [1.0] * 3).eval().resize(image)
    assert torch.equal(traced_resize(image, *limits), ref)


def test_onnx_predict_writes_what_the_pytorch_path_writes(exported, tmp_path):
    """`segzoo predict --backend onnxruntime --model m.onnx` for a Mask R-CNN: the same label PNGs
    and COCO json (boxes to 0.5 px, scores to 1e-3, masks) as `--checkpoint`, at image
    sizes other than the export size."""
    import json

    from PIL import Image
    from pycocotools import mask as coco_mask

    from segzoo.checkpoint import save_checkpoint
    from segzoo.cli import main
    from segzoo.export.detection import example_image

    model, path, _ = exported
    kwargs = "\n".join(f"  {k}: {json.dumps(v)}" for k, v in TINY.items())
    config = tmp_path / "tiny_maskrcnn.yaml"
    config.write_text(f"_base_: [{(DATASET).as_posix()}]\nmodel:\n  name: maskrcnn\n  backbone: resnet18\n{kwargs}\n"
                      "data:\n  val:\n    dataset: {with_instances: true}\n    transforms: []\n"
                      "  mean: [0.0, 0.0, 0.0]\n  std: [1.0, 1.0, 1.0]\n")
    ckpt = save_checkpoint({"model": model.state_dict()}, tmp_path / "ck.pt")
    (tmp_path / "images").mkdir()
    for i, (h, w) in enumerate([(90, 70), (45, 101)]):
        rgb = (example_image(h, w, seed=7 + i).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / "images" / f"img{i}.png")
    common = ["predict", str(config), "--input", str(tmp_path / "images")]
    assert main([*common, "--checkpoint", str(ckpt), "--output", str(tmp_path / "pt"), "--batch-size", "1"]) == 0
    assert main([*common, "--backend", "onnxruntime", "--model", str(path), "--output", str(tmp_path / "ort")]) == 0
    pt, ort = (json.loads((tmp_path / d / "instances.json").read_text()) for d in ("pt", "ort"))
    assert len(pt["annotations"]) == len(ort["annotations"]) > 0
    probs = {}  # PyTorch's mask probabilities per image (the predict path has no transforms here)
    for i in range(2):
        rgb = np.asarray(Image.open(tmp_path / "images" / f"img{i}.png"), dtype=np.float32) / 255
        with torch.no_grad():
            probs[i + 1] = model([torch.from_numpy(rgb).permute(2, 0, 1)])[0]["masks"][:, 0].numpy()
    first = {}
    for a, b in zip(pt["annotations"], ort["annotations"]):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        k = a["id"] - first.setdefault(a["image_id"], a["id"])
        differ = coco_mask.decode(a["segmentation"]) != coco_mask.decode(b["segmentation"])
        # only pixels whose probability is 0.5 within float rounding may differ (the untrained
        # head's pasted edges have whole rows of them)
        assert np.all(np.abs(probs[a["image_id"]][k][differ] - 0.5) < 1e-3)
        assert np.abs(np.subtract(a["bbox"], b["bbox"])).max() <= 0.5 and abs(a["score"] - b["score"]) < 1e-3
    for i in range(2):
        a = np.asarray(Image.open(tmp_path / "pt" / "labels" / f"img{i}.png"))
        b = np.asarray(Image.open(tmp_path / "ort" / "labels" / f"img{i}.png"))
        assert (a == b).mean() > 0.99


def test_export_command_takes_a_detector_without_size_and_says_what_the_graph_is(exported, tmp_path, capsys):
    """`segzoo export` on a Mask R-CNN config with no val resize: the model's own min_size gives the
    traced size, the message describes the one-image graph and the verification, and the file
    carries the class names for `predict --backend onnxruntime`."""
    import json

    from segzoo.checkpoint import save_checkpoint
    from segzoo.cli import main
    from segzoo.export.runtime import load_onnx_model

    model, _, _ = exported
    kwargs = "\n".join(f"  {k}: {json.dumps(v)}" for k, v in TINY.items())
    config = tmp_path / "tiny_maskrcnn.yaml"
    config.write_text(f"_base_: [{DATASET.as_posix()}]\nmodel:\n  name: maskrcnn\n  backbone: resnet18\n{kwargs}\n"
                      "data:\n  val:\n    transforms: []\n  mean: [0.0, 0.0, 0.0]\n  std: [1.0, 1.0, 1.0]\n")
    ckpt = save_checkpoint({"model": model.state_dict()}, tmp_path / "ck.pt")
    out = tmp_path / "m.onnx"
    assert main(["export", str(config), "--checkpoint", str(ckpt), "--output", str(out),
                 "--verify-size", "97", "131"]) == 0
    said = capsys.readouterr().out
    assert "input image 3 x H x W" in said and "onnxruntime matches PyTorch at 97x131" in said
    runner, meta = load_onnx_model(None, out)
    assert runner.task == "instance" and meta["num_classes"] == 4 and runner.meta["model"] == "maskrcnn"
