"""benchmarks/ablations.py and benchmarks/semantic_vs_instance.py on tiny settings (1 iteration,
32x32 shapes): runs train through the engine, are cached (a second call trains nothing), and the
docs sections are written; the cross-task scoring fills both rows of every model."""

import dataclasses
import importlib.util
import json
import re
import shlex
import sys
import types
from pathlib import Path

from conftest import REPO

import segzoo.engine
from segzoo.bench.runs import TrainSpec, common_schedule, train_cached

TINY = ["data.train.dataset.num_images=8", "data.val.dataset.num_images=4", "data.train.batch_size=4",
        "data.val.batch_size=4"]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class NoTraining:
    def __init__(self, *args, **kwargs):
        raise AssertionError("a cached run was trained again")


def test_ablations_run_cache_and_report(tmp_path, monkeypatch):
    ab = load_script("ablations")
    # a group whose model is not registered is listed, not run
    monkeypatch.setattr(ab, "GROUPS", tuple(dataclasses.replace(g, requires="no_such_model")
                                            if g.key == "maskrcnn" else g for g in ab.GROUPS))
    args = ["--only", "pspnet_aux", "maskrcnn", "--iters", "1", "--size", "32",
            "--work-dir", str(tmp_path / "wd"), "--cache", str(tmp_path / "ablations.json"),
            "--doc", str(tmp_path / "ablations.md"), "--set", *TINY]
    assert ab.main(args) == 0
    runs = json.loads((tmp_path / "ablations.json").read_text())["runs"]
    assert set(runs) == {"shapes/pspnet_aux/pspnet_aux/seed0", "shapes/pspnet_aux/pspnet_noaux/seed0"}
    with_aux, no_aux = runs["shapes/pspnet_aux/pspnet_aux/seed0"], runs["shapes/pspnet_aux/pspnet_noaux/seed0"]
    assert with_aux["params"] > no_aux["params"]  # the aux head is really dropped
    assert 0 <= with_aux["metrics"]["mIoU"] <= 1 and with_aux["train_seconds"] > 0
    assert with_aux["iterations"] == 1 and "model.aux_head=false" in no_aux["overrides"]
    assert with_aux["work_dir"] != no_aux["work_dir"]
    doc = (tmp_path / "ablations.md").read_text()
    assert "<!-- ablations:start -->" in doc and "| aux head on layer3, weight 0.4 |" in doc
    assert "Not run: needs no_such_model (not registered)" in doc and "RoIPool (`model.roi_op=pool`)" in doc
    assert "| FCN-32s | not run |" in doc  # groups not selected are listed, not invented
    assert "Our ranking:" in doc

    monkeypatch.setattr(segzoo.engine, "Trainer", NoTraining)  # cached: nothing trains again
    assert ab.main(args) == 0
    assert ab.main([*args, "--report-only"]) == 0


def test_a_changed_config_trains_anew_and_a_lost_cache_finds_the_finished_run(tmp_path, monkeypatch):
    config = str(REPO / "configs" / "fcn" / "fcn_resnet18_shapes-64x64.yaml")
    base = (*common_schedule("shapes", 1, 32, 0), *TINY)
    cache = tmp_path / "c.json"
    a = train_cached(TrainSpec("k", config, base), tmp_path / "wd", cache, log=lambda s: None)
    b = train_cached(TrainSpec("k", config, (*base, "model.dropout=0.2")), tmp_path / "wd", cache,
                     log=lambda s: None)
    assert a["fingerprint"] != b["fingerprint"] and a["work_dir"] != b["work_dir"]
    cache.unlink()
    monkeypatch.setattr(segzoo.engine, "Trainer", NoTraining)
    c = train_cached(TrainSpec("k", config, base), tmp_path / "wd", cache, log=lambda s: None)
    assert c["work_dir"] == a["work_dir"] and c["metrics"]["mIoU"] == a["metrics"]["mIoU"]
    assert c["train_seconds"] == a["train_seconds"] > 0  # kept in the run folder
    d = train_cached(TrainSpec("k", config, (*base, "eval.batch_size=2")), tmp_path / "wd", cache,
                     log=lambda s: None)  # evaluation settings do not change what is trained
    assert d["work_dir"] == a["work_dir"]


def test_semantic_vs_instance_table_plot_and_cross_task_rows(tmp_path, monkeypatch):
    svi = load_script("semantic_vs_instance")
    args = ["--models", "deeplabv3plus", "--iters", "1", "--size", "32",
            "--latency-size", "32", "--latency-repeats", "1", "--in-process",
            "--work-dir", str(tmp_path / "wd"), "--cache", str(tmp_path / "svi.json"),
            "--doc", str(tmp_path / "benchmarks.md"), "--plot", str(tmp_path / "img" / "plot.png"),
            "--set", *TINY]
    assert svi.main(args) == 0
    doc = (tmp_path / "benchmarks.md").read_text()
    rec = json.loads((tmp_path / "svi.json").read_text())["runs"]["shapes/deeplabv3plus/seed0"]
    assert rec["latency"]["latency_ms"] > 0
    cross = rec["cross_task"]  # segzoo compare's scoring: the semantic row and the derived instance row
    assert cross["task"] == "semantic" and cross["mIoU"] == rec["metrics"]["mIoU"]
    assert 0 <= cross["mask_AP"] <= 1
    row = next(line for line in doc.splitlines() if line.startswith("| `deeplabv3plus`"))
    assert "| semantic |" in row and f"| {100 * cross['mask_AP']:.1f} |" in row
    assert row.endswith("| instance: connected components |")
    try:
        import matplotlib  # noqa: F401
        assert (tmp_path / "img" / "plot.png").stat().st_size > 1000
        assert "![accuracy vs latency](img/plot.png)" in doc
    except ImportError:
        assert "plot not written" in doc

    # cached: nothing is trained or scored again
    fake = types.ModuleType("segzoo.evaluation.compare")
    fake.evaluate_run = NoTraining
    monkeypatch.setitem(sys.modules, "segzoo.evaluation.compare", fake)
    monkeypatch.setattr(segzoo.engine, "Trainer", NoTraining)
    assert svi.main(args) == 0
    assert (tmp_path / "benchmarks.md").read_text().count("<!-- semantic-vs-instance:start -->") == 1


def test_every_registered_model_has_a_shapes_config():
    svi = load_script("semantic_vs_instance")
    assert {"fcn32s", "fcn8s", "unet", "deeplabv2", "pspnet"} <= set(svi.registered_models())
    assert "tiny_seg" not in svi.registered_models()
    for name in svi.registered_models():
        assert svi.config_for(name) is not None, name


def test_documented_benchmark_commands_parse():
    """Every command in docs/benchmarks.md and docs/ablations.md parses; their paths exist."""
    from segzoo.cli import build_parser

    commands = []
    for doc in ("benchmarks.md", "ablations.md"):
        text = (REPO / "docs" / doc).read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
            block = block.replace("\\\n", " ")  # join continued lines
            commands += [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert any(c.startswith("segzoo bench") for c in commands)
    assert any("ablations.py" in c for c in commands) and any("semantic_vs_instance.py" in c for c in commands)
    for command in commands:
        words = shlex.split(command)
        if words[0] == "segzoo":
            build_parser().parse_args(words[1:])
        else:
            assert words[0] == "python" and words[1].startswith("benchmarks/"), command
            module = load_script(Path(words[1]).stem)
            args = module.build_parser().parse_args(words[2:])
            for value in vars(args).values():
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, str) and item.startswith("benchmarks/results/"):
                        assert (REPO / item).exists(), item


def test_speed_summary_merges_runs_of_one_machine():
    """benchmarks/speed_summary.py: a later run adds batches/training to a model's row and a timed
    pair replaces an untimed one; registered models without a row are named."""
    ss = load_script("speed_summary")
    row = {"label": "unet/unet_encoder", "candidate": {"name": "unet"}, "params": 1, "gflops": 1.0}
    a = {"models": [{**row, "infer": {"1": {"b1": True}}, "deploy": {"d": 1}}],
         "peers": [{"key": "p", "status": "needs x"}, {"key": "q", "status": "ready", "run": 1}],
         "settings": {"batches": [1]}, "machine": {}}
    b = {"models": [{**row, "infer": {"8": {"b8": True}}, "train": {"t": 1}}],
         "peers": [{"key": "p", "status": "ready", "run": 2}, {"key": "q", "status": "needs y"}],
         "settings": {"batches": [8]}, "machine": {}}
    m = ss.merge([a, b])
    (only,) = m["models"]
    assert set(only["infer"]) == {"1", "8"} and only["train"] == {"t": 1} and only["deploy"] == {"d": 1}
    assert m["settings"]["batches"] == [1, 8]
    assert {p["key"]: p.get("run") for p in m["peers"]} == {"p": 2, "q": 1}
    assert "not benchmarked: " in ss.coverage(m) and "`unet`" not in ss.coverage(m)
