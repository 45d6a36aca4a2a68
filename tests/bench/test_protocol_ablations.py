"""The papers' ablations on camvid-cpu (configs/protocols/camvid-cpu-ablations, benchmarks/
ablation_report.py, os_inference.py) and the protocol latency (benchmarks/protocol_latency.py)."""

import json
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import ablation_report  # noqa: E402
import compare  # noqa: E402
import compare_report  # noqa: E402
import protocol_latency  # noqa: E402

ABL = REPO / "configs" / "protocols" / "camvid-cpu-ablations"
BASE = REPO / "configs" / "protocols" / "camvid-cpu"


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _diff(a, b):
    fa, fb = _flat(a), _flat(b)
    return {k: (fa.get(k), fb.get(k)) for k in set(fa) | set(fb) if fa.get(k) != fb.get(k)}


@pytest.mark.parametrize("variant, baseline, key, value", [
    ("deeplabv3_mobilenetv2_no-image-pool", BASE / "deeplabv3_mobilenetv2.yaml", "model.image_pooling", False),
    ("pspnet_mobilenetv2_no-aux", BASE / "pspnet_mobilenetv2.yaml", "model.auxiliary_head", False),
    ("unet_w16-valid", ABL / "unet_w16-same.yaml", "model.padding", "valid"),
])
def test_each_ablation_config_differs_from_its_baseline_only_in_the_ablated_key(variant, baseline, key, value):
    from segzoo.config import load_config

    var = load_config(ABL / f"{variant}.yaml").to_dict()
    base = load_config(baseline).to_dict()
    diff = _diff(base, var)
    assert set(diff) == {key} and diff[key][1] == value
    # and every ablation config shares the protocol's non-model settings
    shared = {k: v for k, v in load_config(BASE / "fcn8s_mobilenetv2.yaml").to_dict().items() if k != "model"}
    assert {k: v for k, v in var.items() if k != "model"} == shared
    models = compare.discover(ABL)
    assert variant in [m.name for m in models] and "camvid-cpu-ablations" in compare.PROTOCOLS


@pytest.mark.parametrize("variant, changed", [
    ("fcn8s_mobilenetv2_no-class-weights", {"loss.class_weights": ("median_frequency", None)}),
    ("fcn8s_mobilenetv2_ohem", {"loss.name": ("cross_entropy", "ohem_cross_entropy"),
                                "loss.thresh": (None, 0.7), "loss.min_kept": (None, 10000)}),
    ("fcn8s_mobilenetv2_ema", {"train.ema.decay": (None, 0.999), "train.ema.warmup": (None, True)}),
])
def test_each_recipe_config_is_the_protocol_fcn8s_with_one_training_choice_changed(variant, changed):
    from segzoo.config import load_config

    base = load_config(BASE / "fcn8s_mobilenetv2.yaml").to_dict()
    var = load_config(ABL / f"{variant}.yaml").to_dict()
    assert _diff(base, var) == changed
    assert variant in [m.name for m in compare.discover(ABL)]


def test_the_no_scale_aug_recipe_config_only_drops_the_random_scaling():
    from segzoo.config import load_config

    base = load_config(BASE / "fcn8s_mobilenetv2.yaml").to_dict()
    var = load_config(ABL / "fcn8s_mobilenetv2_no-scale-aug.yaml").to_dict()
    assert set(_diff(base, var)) == {"data.train.transforms"}
    names = [t["name"] for t in var["data"]["train"]["transforms"]]
    assert names == ["resize", "random_flip"] and "random_resize" in [t["name"] for t in base["data"]["train"]["transforms"]]
    assert var["data"]["train"]["transforms"][0]["size"] == [180, 240]


def test_verdict_follows_the_numbers():
    def c(base, var, noise=None, same_sign=None, paired=(0,), n=(1, 1)):
        return {"base": base, "var": var, "diff": var - base, "noise": noise, "same_sign": same_sign,
                "paired_seeds": list(paired), "base_seeds": list(range(n[0])), "var_seeds": list(range(n[1]))}

    three = (3, 3)
    assert ablation_report.verdict(c(0.40, 0.45, 0.01, n=three), +1).startswith("mIoU +5.0: agrees with the paper")
    assert "above the seed-to-seed std (1.0)." in ablation_report.verdict(c(0.40, 0.45, 0.01, n=three), +1)
    assert ablation_report.verdict(c(0.40, 0.45, 0.01, n=three), -1).startswith("mIoU +5.0: disagrees with the paper")
    small = ablation_report.verdict(c(0.40, 0.41, 0.02, n=three), +1)
    assert "below the seed-to-seed std (2.0): not a finding" in small and "would agree" in small
    assert "would disagree" in ablation_report.verdict(c(0.41, 0.40, 0.02, n=three), +1)
    assert "no comparative claim" in ablation_report.verdict(c(0.40, 0.43), 0, ref_std=0.01)
    one_seed = ablation_report.verdict(c(0.40, 0.405), -1, ref_std=0.01)
    assert "below the protocol's typical seed-to-seed std (1.0): not a finding" in one_seed
    tentative = ablation_report.verdict(c(0.40, 0.43), -1, ref_std=0.01)
    assert "above the protocol's typical seed-to-seed std (1.0); one side rests on one seed, so a tentative" in tentative
    # one side with one seed: its own (small) two-seed std is not the yardstick, the typical one is
    mixed_n = ablation_report.verdict(c(0.40, 0.405, 0.001, n=(2, 1)), +1, ref_std=0.01)
    assert "below the protocol's typical seed-to-seed std (1.0)" in mixed_n
    assert "no seed-to-seed std" in ablation_report.verdict(c(0.40, 0.43), -1)
    assert ablation_report.verdict(c(0.4, 0.4, 0.01), +1) == "mIoU +0.0: no difference."
    mixed = ablation_report.verdict(c(0.40, 0.45, 0.01, same_sign=False, paired=(0, 1), n=(2, 2)), +1)
    assert "the sign differs between the paired seeds" in mixed


def test_compare_pairs_seeds_and_takes_the_larger_std():
    base = {0: {"mIoU": 0.40}, 1: {"mIoU": 0.44}, 2: {"mIoU": 0.42}}
    var = {0: {"mIoU": 0.43}, 1: {"mIoU": 0.45}}
    c = ablation_report.compare(base, var, "mIoU")
    assert c["paired_seeds"] == [0, 1] and c["diff"] == pytest.approx(0.02)  # mean of +3, +1
    assert c["noise"] == pytest.approx(0.02) and c["same_sign"] is True and c["base"] == pytest.approx(0.42)
    unpaired = ablation_report.compare({0: {"mIoU": 0.4}}, {1: {"mIoU": 0.5}}, "mIoU")
    assert unpaired["diff"] == pytest.approx(0.1) and unpaired["noise"] is None


def _run(model, seed, miou, biou):
    return {"model": model, "seed": seed, "metrics": {"mIoU": miou, "mBIoU": biou}}


def test_ablation_section_is_rendered_from_both_protocols(tmp_path):
    base, abl = tmp_path / "camvid-cpu", tmp_path / "camvid-cpu-ablations"
    base.mkdir(), abl.mkdir()
    runs = [("fcn32s_mobilenetv2", [0.42, 0.43]), ("fcn16s_mobilenetv2", [0.48, 0.47]),
            ("deeplabv3_mobilenetv2", [0.45, 0.46]), ("deeplabv3plus_mobilenetv2", [0.48, 0.49]),
            ("fcn8s_mobilenetv2", [0.50, 0.49])]
    for model, mious in runs:
        for seed, m in enumerate(mious):
            (base / f"{model}_seed{seed}.json").write_text(json.dumps(_run(model, seed, m, m / 2)))
    (base / "latency.json").write_text(json.dumps({"models": {}}))  # not a run
    (abl / "deeplabv3_mobilenetv2_no-image-pool_seed0.json").write_text(
        json.dumps(_run("deeplabv3_mobilenetv2_no-image-pool", 0, 0.44, 0.2)))
    os8 = {**_run("deeplabv3_mobilenetv2_os8-inference", 0, 0.47, 0.25), "kind": "inference-ablation",
           "baseline": {"metrics": {"mIoU": 0.45, "mBIoU": 0.22}}}
    (abl / "deeplabv3_mobilenetv2_os8-inference_seed0.json").write_text(json.dumps(os8))
    (abl / "fcn8s_mobilenetv2_no-class-weights_seed0.json").write_text(
        json.dumps(_run("fcn8s_mobilenetv2_no-class-weights", 0, 0.46, 0.2)))
    doc = tmp_path / "comparison.md"
    doc.write_text("x\n<!-- compare:camvid-cpu-ablations:begin -->\n<!-- compare:camvid-cpu-ablations:end -->\ny\n")
    body = compare_report.update_doc("camvid-cpu-ablations", abl, doc, tmp_path / "img")
    rows = {line.split(" | ")[0][2:]: line for line in body.splitlines() if line.startswith("| ")}
    fcn = rows["FCN-32s -> FCN-16s (+ stride-16 skip)"]
    assert "| 0,1 / 0,1 |" in fcn and "| 42.5 ± 0.7 (2) | 47.5 ± 0.7 (2) | +5.0 |" in fcn
    assert "mIoU +5.0: agrees with the paper" in fcn and "same sign on all 2 paired seeds" in fcn
    pool = rows["DeepLab v3: ASPP with -> without image pooling"]
    assert "| 45.5 ± 0.7 (2) | 44.0 (1) | -1.0 (paired: seed 0) |" in pool
    assert "mIoU -1.0: agrees with the paper" in pool and "above the seed-to-seed std (0.7)" in pool
    assert "one side rests on one seed" in pool
    assert "| 45.0 (1) | 47.0 (1) | +2.0 |" in rows["DeepLab v3: inference at OS 16 -> OS 8 (same weights)"]
    assert "Not run yet" in body and "PSPNet: with -> without the auxiliary loss" in body
    # the recipe table: the protocol's FCN-8s runs against one-change variants
    paper, recipe = body.split("**The recipe itself**")
    weights = rows["median-frequency class weights -> plain cross-entropy"]
    assert weights in recipe and weights not in paper
    assert "| 49.5 ± 0.7 (2) | 46.0 (1) | -4.0 (paired: seed 0) |" in weights
    assert "mIoU -4.0: agrees with the paper (the variant is worse)" in weights
    assert "Not run yet (no result JSON on one side): random scale 0.5-2.0" in recipe
    assert "+ OHEM" in recipe and "+ EMA" in recipe and "Read as the table above" in recipe
    assert doc.read_text().startswith("x\n") and doc.read_text().endswith("y\n")


def test_protocol_latency_times_two_tiny_models_and_the_report_reads_it(tmp_path):
    src = (REPO / "configs" / "protocols" / "shapes-smoke" / "fcn32s_mobilenetv2.yaml").read_text()
    src = src.replace("../../_base_/", str(REPO / "configs" / "_base_") + "/")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "fcn32s_tiny.yaml").write_text(src.replace("fc_channels: 64", "fc_channels: 8"))
    smoke = REPO / "configs" / "_base_" / "protocols" / "shapes-smoke.yaml"
    (configs / "unet_tiny.yaml").write_text(f"_base_: [{smoke}]\nmodel: {{name: unet, base_channels: 4, depth: 2}}\n")
    out = tmp_path / "results" / "latency.json"
    assert protocol_latency.main(["--protocol", "p", "--config-dir", str(configs), "--size", "32", "32",
                                  "--repeats", "1", "--warmup", "0", "--out", str(out)]) == 0
    lat = json.loads(out.read_text())
    assert lat["protocol"] == "p" and lat["size"] == [32, 32] and lat["batch"] == 1 and lat["threads"] == 1
    assert lat["repeats"] == 1 and lat["machine"] and lat["torch"] and "commit" in lat
    assert set(lat["models"]) == {"fcn32s_tiny", "unet_tiny"}
    for m in lat["models"].values():
        assert m["latency_ms"] > 0 and m["n"] == 1 and m["p25_ms"] <= m["latency_ms"] <= m["p75_ms"]
    assert lat["models"]["unet_tiny"]["arch"] == "unet"
    # the report: latency.json fills the column and is not read as a run
    run = {"model": "unet_tiny", "arch": "unet", "seed": 0, "iterations": 4, "latency_ms": None,
           "metrics": {"mIoU": 0.5, "mean_acc": 0.6, "pixel_acc": 0.9, "mBIoU": 0.2},
           "per_class": {"IoU": {"a": 0.5}}, "params": 1000, "gflops": 0.1, "flops_size": [32, 32],
           "train_wall_s": 60.0, "machine": "cpu", "commit": "abc"}
    (out.parent / "unet_tiny_seed0.json").write_text(json.dumps(run))
    doc = tmp_path / "doc.md"
    body = compare_report.update_doc("p", out.parent, doc, tmp_path / "img")
    row = next(line for line in body.splitlines() if line.startswith("| unet_tiny |"))
    assert f"| {lat['models']['unet_tiny']['latency_ms']:.1f} |" in row
    assert "CPU latency: `benchmarks/protocol_latency.py`, batch 1, 32x32" in body
    assert "val mIoU against CPU latency" in body


def test_os_inference_scores_the_same_weights_at_both_strides(tmp_path):
    import os_inference

    configs = tmp_path / "configs"
    configs.mkdir()
    base = REPO / "configs" / "_base_" / "protocols"
    (configs / "dlv3.yaml").write_text(
        f"_base_: [{base / 'shapes-smoke.yaml'}, {base / 'models' / 'deeplabv3_mobilenetv2.yaml'}]\n"
        "model: {weights_backbone: null, channels: 16}\ntrain: {max_iters: 2}\n")
    smoke = compare.PROTOCOLS["shapes-smoke"]
    (run,) = compare.plan(smoke, compare.discover(configs), None, tmp_path / "work", tmp_path / "results")
    assert compare.run_protocol(smoke, [run], log=lambda s: None) == {run.label: "trained"}
    out = tmp_path / "abl"
    argv = ["--model", "dlv3", "--seeds", "0", "1", "--work-root", str(tmp_path / "work"), "--out-dir", str(out)]
    assert os_inference.main(argv) == 0
    res = json.loads((out / "dlv3_os8-inference_seed0.json").read_text())
    assert not (out / "dlv3_os8-inference_seed1.json").exists()  # seed 1 has no finished run
    assert res["kind"] == "inference-ablation" and res["model"] == "dlv3_os8-inference" and res["seed"] == 0
    assert res["ablated"] == {"model.output_stride": [16, 8]} and res["iterations"] == 2
    # the OS-16 evaluation reproduces the run's own final evaluation
    assert res["baseline"]["metrics"]["mIoU"] == pytest.approx(res["trained_metrics_mIoU"], abs=1e-6)
    assert set(res["metrics"]) == {"mIoU", "mean_acc", "pixel_acc", "fwIoU", "mDice", "mBIoU"}
    assert set(res["per_class"]["IoU"]) == {"background", "circle", "square", "triangle"}
    assert os_inference.name("m", 8, [6, 12, 18]) == "m_os8-rates6-12-18-inference"

    # the full-resolution variant: the same weights, the val images not resized
    assert os_inference.main(argv[:4] + argv[5:] + ["--full-res"]) == 0
    full = json.loads((out / "dlv3_full-res-inference_seed0.json").read_text())
    assert full["model"] == "dlv3_full-res-inference" and full["ablated"] == {
        "data.val.transforms": ["resize to 180x240", "none (360x480)"]}
    assert full["baseline"]["metrics"]["mIoU"] == pytest.approx(res["baseline"]["metrics"]["mIoU"], abs=1e-9)
