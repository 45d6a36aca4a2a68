"""segzoo bench: the CLI end to end on a tiny model (fresh worker processes, JSON + Markdown),
peer pairs (equal parameter counts, equal outputs after copying weights), the timing helpers and
the instance-model (torchvision detection contract) path that Mask R-CNN will take."""

import json
import tempfile

import pytest
import torch
from helpers.version_marks import needs_dynamic_pooling
from torch import nn

import segzoo
from segzoo.bench.candidates import Candidate
from segzoo.bench.flops import count_flops, count_params
from segzoo.bench.peers import PAIRS, copy_weights, randomise_bn
from segzoo.bench.report import failures, ratio_of, replace_section
from segzoo.bench.runner import BenchSettings, for_timing, model_specs, run_benchmark
from segzoo.bench.timing import (
    inference_step,
    paired_ratios,
    profile_run,
    profile_table,
    run_interleaved,
    summarize,
    training_step,
)
from segzoo.cli import main
from segzoo.errors import SegzooError
from segzoo.export.deploy import main_output

TINY_UNET = {"base_channels": 4, "depth": 2, "norm": "bn"}


def test_bench_cli_end_to_end_on_a_tiny_model(tmp_path, capsys, monkeypatch):
    out = tmp_path / "bench"
    scratch = tmp_path / "tmp"  # where the workers' job files go
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    rc = main(["bench", "--models", "unet", "--set", "base_channels=4", "depth=2", "norm=bn",
               "--size", "32", "48", "--batch", "1", "2", "--repeats", "2", "--warmup", "1",
               "--deploy", "--no-peers", "--threads", "1", "--matmul-size", "256", "--out", str(out)])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    res = json.loads((out / "bench.json").read_text())
    m = res["machine"]
    for key in ("cpu", "cpu_count", "torch", "torchvision", "date", "load_average"):
        assert m[key], key
    assert res["settings"]["size"] == [32, 48] and res["settings"]["threads"] == 1

    (row,) = res["models"]
    model = segzoo.build_model("unet", num_classes=21, **TINY_UNET)
    assert row["label"] == "unet/unet_encoder"
    assert row["params"] == count_params(model)
    assert row["gflops"] == pytest.approx(count_flops(model, (32, 48)) / 1e9)
    for b in ("1", "2"):
        job = row["infer"][b]
        assert "error" not in job, job
        assert job["batch"] == int(b) and job["threads"] == 1
        (cand,) = job["candidates"]
        assert len(cand["times_s"]) == 2 and cand["seconds"]["median"] > 0
        assert job["peak_rss_mb"] >= job["rss_before_mb"] > 50  # a fresh process with torch loaded
        assert job["matmul_gflops"] > 0
    assert row["train"]["mode"] == "train" and row["train"]["batch"] == 2
    dep = row["deploy"]
    assert [c["label"] for c in dep["candidates"]] == ["unet/unet_encoder", "unet/unet_encoder [deploy]"]
    assert dep["fused_pairs"]["unet/unet_encoder [deploy]"] > 0
    assert dep["deploy_max_abs_diff"]["unet/unet_encoder [deploy]"] < 1e-4
    assert ratio_of(dep, 0, 1)["median"] > 0

    md = (out / "bench.md").read_text()
    assert "| `unet/unet_encoder` |" in md and "FLOPs = 2 x" in md
    assert "load average" in md and "GPU: none (CPU only)" in md
    assert not list(scratch.iterdir())  # each job's folder went with its worker


def test_bench_cli_exits_1_when_a_measurement_fails_and_keeps_the_rows(tmp_path, capsys):
    """A worker that times out fails its measurement: the run goes on, bench.json/bench.md are
    written with the failure in the row, stderr lists it and the exit status is 1 (scripts and
    the GPU check see it; run 1 of the GPU check passed 14 failed measurements with status 0)."""
    out = tmp_path / "bench"
    rc = main(["bench", "--models", "unet", "--set", "base_channels=4", "depth=2", "--size", "32",
               "--batch", "1", "--no-train", "--no-peers", "--timeout", "0.01", "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "1 measurement(s) failed" in err and "unet/unet_encoder inference b1: timed out after 0.01 s" in err
    res = json.loads((out / "bench.json").read_text())
    assert res["models"][0]["params"] > 0 and "timed out" in res["models"][0]["infer"]["1"]["error"]
    assert "failed: timed out" in (out / "bench.md").read_text()


def test_failures_lists_failed_measurements_not_skipped_ones():
    ok = {"candidates": [{"seconds": {"median": 0.1, "p25": 0.1, "p75": 0.1}}]}
    results = {"models": [
        {"label": "a", "error": "build failed: TypeError: x"},
        {"label": "b", "infer": {"1": ok, "8": {"error": "worker exit 1: CUDA out of memory"}},
         "train": ok, "deploy": {"error": "ValueError: fusion"}},
        {"label": "maskrcnn/resnet50", "infer": {"1": ok},
         "onnxruntime": {"skipped": "instance models are not exported to ONNX"}}],
        "peers": [{"key": "smp Unet", "status": "segmentation_models_pytorch is not installed"},
                  {"key": "torchvision fcn_resnet50", "status": "ready", "run": {"error": "timed out after 9 s"}},
                  {"key": "torchvision deeplabv3_resnet50", "status": "ready", "run": ok}]}
    assert failures(results) == ["a: build failed: TypeError: x",
                                 "b inference b8: worker exit 1: CUDA out of memory",
                                 "b deploy: ValueError: fusion",
                                 "peer torchvision fcn_resnet50: timed out after 9 s"]
    assert failures({"models": [results["models"][2]], "peers": []}) == []


def test_peer_pair_interleaved_with_copied_weights(tmp_path):
    """A peer pair (run in this process to keep the test short; the CLI test covers workers)."""
    settings = BenchSettings(models=[], peers=["fcn_resnet50", "maskrcnn", "mobilenet_v3"], size=(32, 32),
                             instance_size=(64, 64), repeats=2, deploy=True, in_process=True, threads=1,
                             matmul_size=128, deploy_compile="backend:eager")
    res = run_benchmark(settings, tmp_path, log=lambda line: None)
    peer, mobile, mask = sorted(res["peers"], key=lambda p: ("fcn" not in p["key"], p["key"]))
    assert peer["key"] == "torchvision fcn_resnet50" and peer["status"] == "ready"
    assert mobile["status"] == "not offered" and "run" not in mobile
    run = peer["run"]
    assert [c["label"] for c in run["candidates"]] == [
        "fcn/resnet50", "torchvision fcn_resnet50", "fcn/resnet50 [deploy]"]
    assert peer["ours_counts"]["params"] == peer["peer_counts"]["params"] == 32_957_013
    assert run["output_max_abs_diff"] < 1e-5 and run["output_max_abs"] > 0.1  # weights copied
    r = ratio_of(run, 0, 1)
    assert r["n"] == 2 and r["p25"] <= r["median"] <= r["p75"]
    inverse = ratio_of(run, 1, 0)
    assert inverse["median"] == pytest.approx(1 / r["median"])
    md = (tmp_path / "bench.md").read_text()
    assert "| torchvision fcn_resnet50 | equal | 32.96 / 32.96 |" in md
    assert "| torchvision deeplabv3_mobilenet_v3_large | not offered |" in md
    if "maskrcnn" not in segzoo.list_models():
        assert mask["status"].startswith("needs maskrcnn") and "not timed: needs maskrcnn" in md
    else:  # torchvision's weights in ours: the same detections, timed at --instance-size
        assert mask["status"] == "ready" and mask["size"] == [64, 64]
        assert mask["run"]["output_max_abs_diff"] < 1e-3
        # the deploy detector against its eager twin: detections matched, not raw tensors
        det = mask["run"]["deploy_detections"]["maskrcnn/resnet50 [deploy]"]
        assert set(det) >= {"detections", "unmatched_ref", "unmatched_got", "box_diff", "mask_iou_decided"}
        assert "matched, " in md
    assert "torch.compile mode backend:eager (a detector: its backbone)" in md


def test_deploy_variant_in_bf16_against_fp32_eager(tmp_path):
    """--deploy-dtype: the deploy variant autocasts to bf16 while eager stays float32."""
    settings = BenchSettings(models=["unet"], model_kwargs=TINY_UNET, size=(32, 32), batches=[1],
                             repeats=2, train=False, deploy=True, deploy_dtype="bf16", peers=[],
                             in_process=True, threads=1, matmul_size=128)
    res = run_benchmark(settings, tmp_path, log=lambda line: None)
    diff = res["models"][0]["deploy"]["deploy_max_abs_diff"]["unet/unet_encoder [deploy]"]
    assert 1e-4 < diff < 0.5  # bf16 rounding, not float32's
    assert "autocast bf16" in (tmp_path / "bench.md").read_text()
    with pytest.raises(SegzooError, match="--deploy-dtype must be"):
        run_benchmark(BenchSettings(deploy_dtype="int8"), None, log=lambda line: None)
    with pytest.raises(SegzooError, match="--deploy-compile: unknown compile setting 'fastest'"):
        run_benchmark(BenchSettings(deploy_compile="fastest"), None, log=lambda line: None)  # before any row


def test_model_specs_all_backbones_and_kwargs():
    specs = model_specs(BenchSettings(models=["all"]))
    names = [c.name for c in specs]
    assert "tiny_seg" not in names  # test-only models are left out
    for name in ("fcn32s", "fcn16s", "fcn8s", "fcn", "unet", "deeplabv2", "deeplabv3", "deeplabv3plus", "pspnet"):
        assert name in names
    assert {c.name: c.kwargs["backbone"] for c in specs}["deeplabv3plus"] == "resnet101"
    specs = model_specs(BenchSettings(models=["deeplabv3", "unet"], backbones=["resnet18", "mobilenet_v2"],
                                      model_kwargs={"output_stride": 16}))
    assert [c.label for c in specs] == ["deeplabv3/resnet18", "deeplabv3/mobilenet_v2", "unet/resnet18",
                                        "unet/mobilenet_v2"]
    assert specs[0].kwargs["output_stride"] == 16 and "output_stride" not in specs[2].kwargs
    assert model_specs(BenchSettings(models=["none"])) == []  # a peers-only run
    with pytest.raises(SegzooError, match="unknown model"):
        model_specs(BenchSettings(models=["fcn9s"]))


def test_peer_pairs_cover_the_issue_and_equal_pairs_have_equal_parameter_counts():
    keys = {p.key for p in PAIRS}
    for k in ("torchvision fcn_resnet50", "torchvision deeplabv3_resnet50",
              "torchvision deeplabv3_mobilenet_v3_large", "torchvision maskrcnn_resnet50_fpn",
              "smp Unet resnet34", "smp DeepLabV3Plus resnet101", "smp PSPNet resnet50"):
        assert k in keys
    by_key = {p.key: p for p in PAIRS}
    assert by_key["torchvision deeplabv3_mobilenet_v3_large"].status() == "not offered"
    if "maskrcnn" not in segzoo.list_models():
        assert by_key["torchvision maskrcnn_resnet50_fpn"].status().startswith("needs maskrcnn")
    for p in PAIRS:
        if p.relation != "equal" or p.status().startswith("needs maskrcnn"):
            continue
        if p.peer.source == "smp":
            pytest.importorskip("segmentation_models_pytorch")
        ours, peer = p.ours.build_meta(21), p.peer.build_meta(21)
        assert count_params(ours) == count_params(peer), p.key
        if "rcnn" not in p.peer.name:  # detection models: parameters only (data-dependent RoI counts)
            assert count_flops(ours, 64) == count_flops(peer, 64), p.key


def test_smp_unet_equals_ours_after_copying_weights():
    pytest.importorskip("segmentation_models_pytorch")
    pair = next(p for p in PAIRS if p.key == "smp Unet resnet34")
    torch.manual_seed(0)
    ours, peer = pair.ours.build(5), pair.peer.build(5)
    randomise_bn(peer)
    copy_weights(pair.copy, peer, ours)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a, b = ours(x), main_output(peer(x))
    assert b.abs().max() > 0.1
    assert (a - b).abs().max() < 1e-5
    with pytest.raises(SegzooError, match="do not line up"):
        copy_weights("order", peer, segzoo.build_model("unet", num_classes=4, backbone="resnet34"))
    with pytest.raises(SegzooError, match="differ in length"):
        copy_weights("order", peer, segzoo.build_model("unet", num_classes=5, backbone="resnet18"))


def test_summaries_and_interleaving():
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.5, 1.0, 4.0, 4)
    assert (s["p25"], s["p75"]) == (1.75, 3.25)
    assert paired_ratios([2.0, 4.0, 9.0], [1.0, 2.0, 3.0])["median"] == 2.0
    calls = []
    times = run_interleaved([lambda: calls.append("a"), lambda: calls.append("b")], warmup=1, repeats=2,
                            device=torch.device("cpu"))
    assert calls == ["a", "b", "b", "a", "a", "b"]  # order rotated every round
    assert [len(t) for t in times] == [2, 2]


def test_replace_section(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\nintro\n")
    replace_section(doc, "speed", "table 1")
    replace_section(doc, "speed", "table 2")
    text = doc.read_text()
    assert text.count("<!-- speed:start -->") == 1 and "table 2" in text and "table 1" not in text
    assert text.startswith("# Title\n\nintro\n")


def test_instance_models_run_at_the_benchmark_size():
    """Detection models resize inputs themselves (800/1333): timed at a size, they are told it."""
    tv = for_timing(Candidate("torchvision", "maskrcnn_resnet50_fpn"), (320, 480))
    assert tv.kwargs == {"min_size": 320, "max_size": 480, "box_score_thresh": 0.0}
    seg = Candidate("torchvision", "fcn_resnet50", {"aux_loss": False})
    assert for_timing(seg, (320, 480)) == seg
    ours = for_timing(Candidate("torchvision", "maskrcnn_resnet50_fpn", {"min_size": 64}), (320, 320))
    assert ours.kwargs["min_size"] == 320  # the timing size wins over a config's training size


def test_instance_models_follow_the_detection_contract():
    """The detection contract of instance models, exercised with torchvision's Mask R-CNN."""
    cand = Candidate("torchvision", "maskrcnn_resnet50_fpn",
                     {"min_size": 64, "max_size": 64})
    model = cand.build(3)
    images = torch.rand(2, 3, 64, 64)
    out = inference_step(model, images, None)()
    assert out.ndim == 2 and out.shape[-1] == 4  # the first image's boxes
    step = training_step(model, images, None, num_classes=3)
    loss = step()
    assert torch.isfinite(loss) and loss > 0


def test_training_step_updates_weights_and_uses_loss_weights():
    model = segzoo.build_model("unet", num_classes=3, **TINY_UNET)
    before = [p.detach().clone() for p in model.parameters()]
    step = training_step(model, torch.randn(2, 3, 32, 32), None, num_classes=3)
    loss = step()
    assert loss > 0 and model.training
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

    class TwoOutputs(nn.Module):
        loss_weights = {"out": 1.0, "aux": 0.0}

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            y = self.conv(x)
            return {"out": y, "aux": y * 1000}

    torch.manual_seed(0)
    model = TwoOutputs()
    x = torch.randn(1, 3, 8, 8)
    loss = training_step(model, x, None, num_classes=3)()
    labels = torch.randint(0, 3, (1, 8, 8), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    ref = nn.functional.cross_entropy(TwoOutputs().conv(x), labels)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)  # the aux output weighs 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_training_step_scales_the_loss_in_float16_only(dtype, monkeypatch):
    """fp16 training is timed as the engine runs it, with a GradScaler (and its overflow check);
    bf16 needs none."""
    scaled = []
    real_scale = torch.amp.GradScaler.scale
    monkeypatch.setattr(torch.amp.GradScaler, "scale",
                        lambda self, x: scaled.append(self.is_enabled()) or real_scale(self, x))
    model = segzoo.build_model("unet", num_classes=3, **TINY_UNET)
    before = [p.detach().clone() for p in model.parameters()]
    loss = training_step(model, torch.randn(2, 3, 32, 32), dtype, num_classes=3)()
    assert torch.isfinite(loss) and scaled == [dtype is torch.float16]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@needs_dynamic_pooling
def test_onnxruntime_row_times_the_exported_model_against_eager(tmp_path, monkeypatch):
    """--onnxruntime: the same model exported to ONNX, run by onnxruntime, interleaved with eager
    (in this process to keep the test short; the CLI test covers workers)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    settings = BenchSettings(models=["unet"], model_kwargs=TINY_UNET, size=(32, 48), batches=[1],
                             repeats=2, train=False, onnxruntime=True, peers=[], in_process=True,
                             threads=1, matmul_size=128)
    res = run_benchmark(settings, tmp_path, log=lambda line: None)
    job = res["models"][0]["onnxruntime"]
    assert [c["label"] for c in job["candidates"]] == ["unet/unet_encoder", "unet/unet_encoder [onnxruntime]"]
    assert job["onnxruntime_max_abs_diff"]["unet/unet_encoder [onnxruntime]"] < 1e-4
    assert all(len(c["times_s"]) == 2 for c in job["candidates"]) and ratio_of(job, 0, 1)["median"] > 0
    md = (tmp_path / "bench.md").read_text()
    assert "onnxruntime speedup" in md and "(diff " in md.split("| `unet/unet_encoder` |")[1]
    assert not list(scratch.iterdir())  # the exported file's folder went once onnxruntime had loaded it


def test_profile_table_says_whether_compiled_code_ran_even_outside_its_top_rows():
    conv = nn.Conv2d(3, 4, 3)
    x = torch.randn(1, 3, 16, 16)
    compiled = torch.compile(conv, backend="eager")
    compiled(x)  # compile outside the profiled calls
    cpu = torch.device("cpu")
    # top=1: the single row is whichever op took longest, yet the summary line is always there
    table = profile_table(lambda: compiled(x).sum().backward(), cpu, calls=3, top=1)
    assert "Torch-Compiled Region entered 3 times in 3 calls" in table
    # which op tops the eager table is up to the machine's noise (an autograd wrapper row at
    # times), so the ops are read from the counts
    eager, ops = profile_run(lambda: conv(x).sum().backward(), cpu, calls=3, top=1)
    assert ops["aten::convolution"] == 3 and "Torch-Compiled" not in eager
