"""The protocol runner (benchmarks/compare.py): plan order, training in subprocesses, skipping
finished runs, resuming killed ones, the result JSON, and the report built from result JSONs."""

import json
import shutil
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import compare  # noqa: E402
import compare_report  # noqa: E402

from segzoo.errors import ConfigError  # noqa: E402

SMOKE = compare.PROTOCOLS["shapes-smoke"]


def test_camvid_cpu_plan_seed_zero_for_all_then_extra_seeds_for_the_claimed_triples(tmp_path):
    models = compare.discover(REPO / "configs" / "protocols" / "camvid-cpu")
    assert [m.arch for m in models] == list(compare.ARCH_ORDER)
    runs = compare.plan(compare.PROTOCOLS["camvid-cpu"], models, None, tmp_path / "w", tmp_path / "r")
    assert [(r.model.arch, r.seed) for r in runs[:9]] == [(a, 0) for a in compare.ARCH_ORDER]
    assert [(r.model.arch, r.seed) for r in runs[9:]] == (
        [(a, 1) for a in compare.CLAIMED] + [(a, 2) for a in compare.CLAIMED])
    assert runs[0].work_dir == tmp_path / "w" / "fcn32s_mobilenetv2" / "seed0"
    assert runs[-1].result == tmp_path / "r" / "deeplabv3plus_mobilenetv2_seed2.json"
    explicit = compare.plan(compare.PROTOCOLS["camvid-cpu"], models[:2], [3, 4], tmp_path, tmp_path)
    assert [(r.model.arch, r.seed) for r in explicit] == [("fcn32s", 3), ("fcn16s", 3), ("fcn32s", 4), ("fcn16s", 4)]
    with pytest.raises(SystemExit, match="unknown model.*fcn9s"):
        compare.select(models, ["fcn9s"])
    # every camvid protocol config differs from its sibling only in `model:`
    from segzoo.config import load_config

    cfgs = {m.name: load_config(m.config).to_dict() for m in models}
    shared = [{k: v for k, v in c.items() if k != "model"} for c in cfgs.values()]
    assert all(s == shared[0] for s in shared)
    assert all(c["model"]["backbone"] == "mobilenet_v2" for c in cfgs.values())
    assert all(c["model"]["weights_backbone"].endswith("mobilenet_v2_imagenet_features.safetensors")
               for c in cfgs.values())
    full = {p.stem: load_config(p).to_dict() for p in (REPO / "configs" / "protocols" / "camvid-full").glob("*.yaml")}
    assert set(full) == set(cfgs)
    assert all(full[k]["model"] == cfgs[k]["model"] for k in cfgs)


def test_runner_trains_skips_collects_resumes_and_survives_a_crash(tmp_path):
    # a protocol folder with a run that crashes (missing weights) before a good one
    src = REPO / "configs" / "protocols" / "shapes-smoke" / "fcn32s_mobilenetv2.yaml"
    configs = tmp_path / "configs"
    configs.mkdir()
    text = src.read_text().replace("../../_base_/", str(REPO / "configs" / "_base_") + "/")
    (configs / "a_broken.yaml").write_text(text.replace("weights_backbone: null", "weights_backbone: /no/such.pt"))
    (configs / "fcn32s_mobilenetv2.yaml").write_text(text)
    broken, run = compare.plan(SMOKE, compare.discover(configs), None, tmp_path / "work", tmp_path / "results")
    assert run.state() == "new"
    outcomes = compare.run_protocol(SMOKE, [broken, run], log=lambda s: None)
    assert outcomes[broken.label].startswith("failed (rc ") and outcomes[run.label] == "trained"
    assert "no/such.pt" in (broken.work_dir / "console.log").read_text() and not broken.result.exists()

    result = json.loads(run.result.read_text())
    assert result["protocol"] == "shapes-smoke" and result["model"] == "fcn32s_mobilenetv2"
    assert result["arch"] == "fcn32s" and result["backbone"] == "mobilenet_v2" and result["seed"] == 0
    assert result["iterations"] == 4 and result["attempts"] == 1 and result["threads"] == 1
    assert set(result["metrics"]) == {"mIoU", "mean_acc", "pixel_acc", "fwIoU", "mDice", "mBIoU"}
    assert 0.0 <= result["metrics"]["mIoU"] <= 1.0 and 0.0 <= result["metrics"]["pixel_acc"] <= 1.0
    assert set(result["per_class"]["IoU"]) == {"background", "circle", "square", "triangle"}
    assert result["params"] > 2_000_000 and result["gflops"] > 0 and result["flops_size"] == [64, 64]
    assert result["train_wall_s"] > 0 and result["train_step_s"] > 0 and result["latency_ms"] is None

    # a finished run is skipped: nothing trains, the result is untouched
    mtime = run.result.stat().st_mtime_ns
    assert compare.run_protocol(SMOKE, [run], log=lambda s: None) == {run.label: "skipped"}
    assert run.result.stat().st_mtime_ns == mtime
    assert len((run.work_dir / "attempts.jsonl").read_text().splitlines()) == 1

    # a finished folder whose result JSON is missing is collected without training; when this
    # process cannot read it (segzoo updated under a long-lived runner), the next call collects it
    run.result.unlink()
    assert run.state() == "trained"
    lines = []

    def stale_schema(*args):
        raise ConfigError("unknown key 'eval.new_option'")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare, "collect", stale_schema)
        assert compare.run_protocol(SMOKE, [run], log=lines.append)[run.label] == "collect failed"
    assert "collecting its result failed (ConfigError: unknown key 'eval.new_option')" in lines[-1]
    assert run.state() == "trained" and not run.result.exists()
    assert compare.run_protocol(SMOKE, [run], log=lambda s: None) == {run.label: "collected"}
    assert len((run.work_dir / "attempts.jsonl").read_text().splitlines()) == 1

    # a run killed after its iteration-2 checkpoint resumes there and finishes
    run.result.unlink()
    (run.work_dir / "metrics.json").unlink()
    shutil.copy(run.work_dir / "checkpoints" / "iter_000002.pt", run.work_dir / "checkpoints" / "last.pt")
    assert run.state() == "partial"
    assert compare.run_protocol(SMOKE, [run], log=lambda s: None) == {run.label: "resumed"}
    assert "at iteration 2" in (run.work_dir / "train.log").read_text()
    resumed = json.loads(run.result.read_text())
    assert resumed["iterations"] == 4 and resumed["attempts"] == 2
    assert resumed["train_wall_s"] > result["train_wall_s"]


def fake_result(model, seed, miou, pole, *, latency=None):
    return {"protocol": "p", "model": model, "arch": model, "seed": seed, "iterations": 100,
            "metrics": {"mIoU": miou, "mean_acc": miou + 0.1, "pixel_acc": 0.9, "mBIoU": None},
            "per_class": {"IoU": {"sky": 0.9, "pole": pole}}, "params": 4_390_000, "gflops": 9.36,
            "flops_size": [360, 480], "train_wall_s": 600.0 + 60 * seed, "latency_ms": latency,
            "machine": "test cpu", "commit": "abc1234"}


def test_report_means_and_stds_over_seeds(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for seed, (miou, pole) in enumerate([(0.50, 0.10), (0.52, 0.20), (0.54, None)]):
        (results / f"a_seed{seed}.json").write_text(json.dumps(fake_result("a", seed, miou, pole)))
    (results / "b_seed0.json").write_text(json.dumps(fake_result("b", 0, 0.455, 0.3)))
    doc = tmp_path / "docs" / "comparison.md"
    doc.parent.mkdir()
    doc.write_text("# Title\n\nhand-written\n\n<!-- compare:p:begin -->\nold\n<!-- compare:p:end -->\n\nafter\n")
    body = compare_report.update_doc("p", results, doc, tmp_path / "docs" / "img")
    text = doc.read_text()
    assert text.startswith("# Title\n\nhand-written\n\n<!-- compare:p:begin -->") and text.endswith("after\n")
    assert "old" not in text
    # a: mIoU 50, 52, 54 -> mean 52.0, sample std 2.0; mean acc 62.0 ± 2.0; train 11 ± 1 min
    row_a = next(line for line in body.splitlines() if line.startswith("| a |"))
    assert row_a.split(" | ")[1:7] == ["0,1,2", "52.0 ± 2.0", "62.0 ± 2.0", "90.0 ± 0.0", "–", "4.39"]
    assert "| 11 ± 1 |" in row_a
    row_b = next(line for line in body.splitlines() if line.startswith("| b |"))
    assert "| 45.5 | 55.5 |" in row_b  # one seed: no ±
    # per-class: pole of a = mean(10, 20) = 15.0 ± 7.1 (the null seed left out)
    assert "| a | 90.0 ± 0.0 | 15.0 ± 7.1 |" in body
    assert (tmp_path / "docs" / "img" / "comparison_p_per_class_iou.png").stat().st_size > 1000
    assert "GFLOPs" in body and "(img/comparison_p_accuracy.png)" in body
    assert compare_report.update_doc("p", results, doc, tmp_path / "docs" / "img") == body  # idempotent


def test_report_without_results_says_runs_are_in_progress(tmp_path):
    doc = tmp_path / "comparison.md"
    compare_report.update_doc("p", tmp_path / "none", doc, tmp_path / "img")
    assert "runs in progress" in doc.read_text() and "<!-- compare:p:end -->" in doc.read_text()
    assert compare_report.mean_std([None, 1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5), 2)


def test_the_documented_commands_parse_and_run(tmp_path, capsys):
    """docs/comparison.md's --dry-run and --report (training is covered above)."""
    argv = ["--protocol", "camvid-cpu", "--work-root", str(tmp_path / "w"), "--results-dir", str(tmp_path / "r")]
    assert compare.main(argv + ["--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[1/21] fcn32s_mobilenetv2 seed 0: new")
    assert out[-2].startswith("[21/21] deeplabv3plus_mobilenetv2 seed 2: new")
    assert "segzoo train configs/protocols/camvid-cpu/fcn32s_mobilenetv2.yaml" in out[-1].replace(str(REPO) + "/", "")
    doc = tmp_path / "comparison.md"
    assert compare.main(argv + ["--report", "--doc", str(doc), "--img-dir", str(tmp_path / "img")]) == 0
    assert "<!-- compare:camvid-cpu:begin -->" in doc.read_text()
    with pytest.raises(SystemExit, match="unknown protocol"):
        compare.main(["--protocol", "camvid-gpu", "--dry-run"])
    text = (REPO / "docs" / "comparison.md").read_text()
    for flag in ("--dry-run", "--report", "--models", "--seeds", "--threads"):
        assert flag in text and flag in " ".join(compare.build_parser()._option_string_actions)
