"""The nuclei protocol (dsb2018): configs, the runner on a hand-made instance folder with a
semantic model, the contour U-Net and Mask R-CNN, and the report built from their results."""

import json
import sys

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

sys.path.insert(0, str(REPO / "benchmarks"))

import compare  # noqa: E402
import dsb_predict  # noqa: E402
import dsb_report  # noqa: E402

from segzoo.config import load_config  # noqa: E402


def test_dsb2018_cpu_configs_share_everything_but_the_model_and_its_own_needs():
    models = compare.discover(REPO / "configs" / "protocols" / "dsb2018-cpu")
    assert [m.arch for m in models] == [*compare.ARCH_ORDER[:5], "unet", "unet", *compare.ARCH_ORDER[5:], "maskrcnn"]
    cfgs = {m.name: load_config(m.config).to_dict() for m in models}
    semantic = [n for n in cfgs if n != "maskrcnn_mobilenetv2" and "contour" not in n]
    shared = [{k: v for k, v in cfgs[n].items() if k != "model"} for n in semantic]
    assert all(s == shared[0] for s in shared)
    assert shared[0]["eval"]["cross_task"] and shared[0]["eval"]["nuclei_metrics"]
    contour = cfgs["unet_mobilenetv2_contour"]
    assert contour["data"]["train"]["dataset"]["contour"] and contour["data"]["val"]["dataset"]["contour"]
    assert contour["eval"]["instance_decoder"] == "contour" and contour["model"] == cfgs["unet_mobilenetv2"]["model"]
    weighted = cfgs["unet_mobilenetv2_contour-weighted"]  # the same, with median-frequency weights
    assert weighted["loss"]["class_weights"] == "median_frequency"
    assert {k: v for k, v in weighted.items() if k != "loss"} == {k: v for k, v in contour.items() if k != "loss"}
    rcnn = cfgs["maskrcnn_mobilenetv2"]
    # the same images and crops; its own optimiser and input normalisation
    assert rcnn["data"]["train"]["transforms"] == shared[0]["data"]["train"]["transforms"]
    assert rcnn["model"]["keep_size"] and rcnn["optimizer"]["name"] == "adamw"
    assert "momentum" not in rcnn["optimizer"]


def nuclei_folder(root, n_train=3, n_val=2):
    """64x64 images with touching square 'nuclei' (bright on dark), in the instance_folder layout."""
    (root / "images").mkdir(parents=True)
    (root / "instances").mkdir()
    rng = np.random.default_rng(0)
    names = [f"img{i}" for i in range(n_train + n_val)]
    for name in names:
        ids = np.zeros((64, 64), np.uint16)
        k = 1
        for y in range(4, 56, 16):
            for x in range(4, 56, 12):
                ids[y:y + 12, x:x + 12] = k  # neighbours touch along x
                k += 1
        img = np.where(ids[..., None] > 0, 200, 30).astype(np.uint8) + rng.integers(0, 20, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"{name}.png")
        Image.fromarray(ids).save(root / "instances" / f"{name}.png")
    (root / "train.txt").write_text("\n".join(names[:n_train]) + "\n")
    (root / "val.txt").write_text("\n".join(names[n_train:]) + "\n")


def test_smoke_protocol_trains_both_tasks_scores_nuclei_and_reports(tmp_path, capsys):
    nuclei_folder(tmp_path / "data")
    protocol = compare.PROTOCOLS["dsb2018-smoke"]
    models = compare.discover(REPO / "configs" / "protocols" / "dsb2018-smoke")
    runs = compare.plan(protocol, models, None, tmp_path / "work", tmp_path / "results")
    root = str(tmp_path / "data")
    outcomes = compare.run_protocol(protocol, runs, overrides=[f"data.train.dataset.root={root}",
                                                                f"data.val.dataset.root={root}"], log=lambda s: None)
    assert set(outcomes.values()) == {"trained"}, outcomes
    results = {r.model.name: json.loads(r.result.read_text()) for r in runs}
    for name, res in results.items():
        m = res["metrics"]
        for key in ("fg_IoU", "fg_Dice", "fg_BIoU", "mask_AP", "dsb_mAP", "merged", "merged_frac"):
            assert key in m, (name, key)
        assert m["num_objects"] == 2 * 20 and 0.0 <= m["dsb_mAP"] <= 1.0
    assert results["maskrcnn_mobilenetv2"]["task"] == "instance"
    assert results["unet_mobilenetv2_contour"]["task"] == "semantic"
    assert len(results["unet_mobilenetv2_contour"]["per_class"]["IoU"]) == 3  # + contour

    # the crowded-image figure, the image-to-instances latency and GFLOPs from the trained runs,
    # one run per model (its lowest seed: a seed-1 result of the same model is not drawn twice)
    seed1 = {**results["fcn32s_mobilenetv2"], "seed": 1}
    (tmp_path / "results" / "fcn32s_mobilenetv2_seed1.json").write_text(json.dumps(seed1))
    figure = tmp_path / "img" / "crowded.png"
    assert dsb_predict.main(["--protocol", "dsb2018-smoke", "--results-dir", str(tmp_path / "results"),
                             "--figure", str(figure), "--repeats", "1", "--warmup", "0"]) == 0
    assert sum(line.startswith("fcn32s_mobilenetv2:") for line in capsys.readouterr().out.splitlines()) == 1
    latency = json.loads((tmp_path / "results" / "latency.json").read_text())
    assert set(latency["models"]) == set(results) and all(v["latency_ms"] > 0 for v in latency["models"].values())
    assert all(v["gflops"] > 0 for v in latency["models"].values())
    assert figure.stat().st_size > 0
    assert results["maskrcnn_mobilenetv2"]["gflops"] is None  # data-dependent: no meta-device count

    doc, img = tmp_path / "comparison.md", tmp_path / "img"
    doc.write_text("# intro\n\n<!-- compare:dsb2018-smoke:start -->\nold\n<!-- compare:dsb2018-smoke:end -->\ntail\n")
    compare.report("dsb2018-smoke", tmp_path / "results", doc, img)
    text = doc.read_text()
    assert "old" not in text and text.startswith("# intro") and text.rstrip().endswith("tail")
    mrcnn = next(line for line in text.splitlines() if line.startswith("| maskrcnn_mobilenetv2 |"))
    assert mrcnn.startswith("| maskrcnn_mobilenetv2 | 0 | Mask R-CNN |")
    assert f"| {latency['models']['maskrcnn_mobilenetv2']['gflops']:.1f}\\* |" in mrcnn
    assert "\\* GFLOPs counted on the latency image" in text
    assert "| fcn32s_mobilenetv2 | 0,1 | connected components |" in text  # both seeds, one row
    assert "| unet_mobilenetv2_contour | 0 | contour decoding |" in text
    assert (img / "comparison_dsb2018-smoke_ap_vs_iou.png").stat().st_size > 0
    assert "CPU latency (`benchmarks/dsb_predict.py`)" in text


def test_findings_are_computed_from_the_numbers():
    def row(model, source, dsb, iou, merged):
        return {"model": model, "source": source, "m": {"dsb_mAP": dsb, "fg_IoU": iou, "merged_frac": merged}}

    rows = [row("a", "connected components", 0.30, 0.80, 0.20), row("b", "connected components", 0.25, 0.85, 0.30),
            row("c", "Mask R-CNN", 0.40, 0.78, 0.05)]
    out = dsb_report.findings(rows)
    assert "a has the best DSB mAP (30.0) and b the best nucleus IoU (85.0)" in out[0]
    assert out[1] == ("c (Mask R-CNN) scores +10.0 DSB mAP points and −2.0 nucleus IoU points against a; "
                      "it merges 5.0% of the nuclei against 20.0%.")
    assert dsb_report.findings([row("c", "Mask R-CNN", 0.4, 0.8, 0.1)]) == []


def test_seeds_of_a_model_are_one_row_with_mean_and_std_and_the_findings_weigh_the_spread():
    def result(model, seed, dsb, iou, arch="unet", task="semantic"):
        return {"model": model, "arch": arch, "seed": seed, "task": task, "iterations": 10,
                "metrics": {"dsb_mAP": dsb, "fg_IoU": iou, "merged": 10 + seed, "merged_frac": 0.1},
                "params": 1e6, "gflops": 2.0, "train_step_s": 60.0}

    results = [result("u", 0, 0.40, 0.80), result("u", 1, 0.42, 0.78), result("u", 2, 0.44, 0.82),
               result("m", 0, 0.41, 0.75, "maskrcnn", "instance"), result("m", 1, 0.43, 0.75, "maskrcnn", "instance")]
    rows = dsb_report.rows_of(results, None)
    assert [(r["model"], r["seeds"]) for r in rows] == [("u", [0, 1, 2]), ("m", [0, 1])]
    u, m = rows
    assert u["m"]["dsb_mAP"] == pytest.approx(0.42) and u["sd"]["dsb_mAP"] == pytest.approx(0.02)
    assert m["sd"]["fg_IoU"] == 0.0 and u["m"]["merged"] == pytest.approx(11.0)
    line = next(x for x in dsb_report.table(rows).splitlines() if x.startswith("| u |"))
    assert line.startswith("| u | 0,1,2 | connected components | 80.0 ± 2.0 |")
    assert "| 42.0 ± 2.0 | 11 ± 1 (10.0%) |" in line
    (finding,) = dsb_report.findings(rows)[1:]
    assert finding.startswith("m (Mask R-CNN) scores +0.0 DSB mAP points and −5.0 nucleus IoU points against u")
    assert "(2 and 3 seeds: the DSB mAP difference is within one seed std, 1.4 and 2.0 points)" in finding
