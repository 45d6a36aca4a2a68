import json

import pytest
import torch

from segzoo.checkpoint import load_checkpoint, save_checkpoint
from segzoo.config import load_config
from segzoo.engine import Trainer
from segzoo.errors import CheckpointError, RunExistsError, SegzooError


def test_tiny_run_leaves_a_complete_run_folder(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    result = Trainer(cfg, tmp_path / "run", progress=False).train()
    wd = result.work_dir
    for name in ("config.yaml", "train.log", "metrics.json", "metrics.jsonl", "checkpoints/last.pt",
                 "checkpoints/best.pt"):
        assert (wd / name).is_file(), name
    assert list((wd / "tb").glob("events.out.tfevents.*"))
    assert len(list((wd / "vis").glob("*.png"))) == 2
    metrics = json.loads((wd / "metrics.json").read_text())
    assert metrics["iteration"] == 4 and 0.0 <= metrics["mIoU"] <= 1.0
    assert set(metrics["IoU"]) == {"background", "circle", "square", "triangle"}
    lines = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [x["iter"] for x in lines if x["mode"] == "train"] == [2, 4]
    # the config is saved as validated (num_classes comes from the dataset, not written back);
    # the checkpoint records the number of classes the model was built with
    assert "num_classes" not in load_config(wd / "config.yaml").model.kwargs
    assert "num_classes" not in cfg.model.kwargs
    state = load_checkpoint(wd / "checkpoints" / "last.pt")
    assert state["iteration"] == 4 and state["meta"]["class_names"][1] == "circle"
    assert state["meta"]["num_classes"] == 4


def test_loss_falls_on_a_tiny_overfit_problem(tiny_config, tmp_path):
    cfg = load_config(tiny_config, [
        "train.max_iters=40", "train.log_interval=10", "data.train.dataset.num_images=4",
        "data.train.transforms=[]", "optimizer.lr=0.05", "scheduler.warmup_iters=0",
        "model.fc_channels=64", "model.dropout=0.0", "data.val=null",
    ])
    Trainer(cfg, tmp_path / "run", progress=False).train()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if x["mode"] == "train"]
    assert losses[-1] < 0.5 * losses[0], losses


def test_finished_run_is_never_overwritten(tiny_config, tmp_path):
    cfg = load_config(tiny_config, ["train.max_iters=2"])
    Trainer(cfg, tmp_path / "run", progress=False).train()
    before = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(RunExistsError, match="finished run"):
        Trainer(load_config(tiny_config), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "metrics.json").read_text() == before


def test_unfinished_run_resumes_from_last_checkpoint(tiny_config, tmp_path):
    wd = tmp_path / "run"
    first = Trainer(load_config(tiny_config, ["train.max_iters=2", "data.val=null"]), wd, progress=False)
    first.train()
    (wd / "metrics.json").unlink()  # make it look interrupted after the checkpoint at iter 2
    t = Trainer(load_config(tiny_config), wd, progress=False)
    result = t.train()
    assert result.metrics["iteration"] == 4
    assert "resumed from" in (wd / "train.log").read_text()
    with pytest.raises(SegzooError, match="no checkpoint"):
        Trainer(load_config(tiny_config), tmp_path / "empty", resume=True, progress=False)


def test_non_finite_loss_stops_with_iteration_and_term(tiny_config, tmp_path):
    cfg = load_config(tiny_config, ["optimizer.lr=1e30", "train.max_iters=20"])
    with pytest.raises(FloatingPointError, match=r"non-finite loss at iteration \d+ \(loss_out\)"):
        Trainer(cfg, tmp_path / "run", progress=False).train()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_atomic_checkpoint_survives_a_crash_during_save(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "iteration": 1}, path)

    def crash(*args, **kwargs):  # what torch.save raises when the disk fills mid-write
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter "
                           "failed writing file data/3: file write failed")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint({"model": {"w": torch.zeros(2)}, "iteration": 2}, path)
    monkeypatch.undo()
    msg = str(info.value)
    assert f"could not write checkpoint {path} (" in msg and "GiB free there" in msg
    assert "file write failed" in msg and "the previous last.pt is unchanged" in msg
    assert "rerun the same command to resume" in msg
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind

    fresh = tmp_path / "sub" / "best.pt"  # nothing older to fall back on: says so
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(CheckpointError, match="no earlier best.pt exists"):
        save_checkpoint({"model": {}}, fresh)
    assert list(fresh.parent.iterdir()) == []


def test_model_num_classes_must_agree_with_dataset(tiny_config, tmp_path):
    cfg = load_config(tiny_config, ["model.num_classes=7"])
    with pytest.raises(SegzooError, match="num_classes' is 7 but dataset ShapesDataset has 4"):
        Trainer(cfg, tmp_path / "run", progress=False)
