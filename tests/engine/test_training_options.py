"""Engine options on the test-only tiny model, in process: AMP, accumulation, clipping, EMA,
channels_last, compile, checkpoints kept, loss weights, class weights, logging."""

import json
import re

import pytest
import torch
from helpers.tiny_model import write_tiny_config

from segzoo.checkpoint import load_checkpoint
from segzoo.config import load_config
from segzoo.distributed import DistInfo, convert_sync_bn
from segzoo.engine import Trainer
from segzoo.engine.reproducibility import cudnn_benchmark
from segzoo.errors import CheckpointError, ConfigError


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and a shared CPU makes two threads crawl)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cfg_path(tmp_path):
    return write_tiny_config(tmp_path / "cfg")


def train(cfg_path, work_dir, *overrides):
    return Trainer(load_config(cfg_path, list(overrides)), work_dir, progress=False).train()


def model_state(path):
    return load_checkpoint(path)["model"]


def test_bf16_autocast_on_cpu_trains_with_finite_losses(cfg_path, tmp_path):
    dtypes = []
    t = Trainer(load_config(cfg_path, ["train.amp=bf16", "train.max_iters=3", "data.val=null"]),
                tmp_path / "run", progress=False)
    t.model.decode_head.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    t.train()
    assert dtypes and set(dtypes) == {torch.bfloat16}
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(x["loss"])) for x in lines)
    assert all(p.dtype == torch.float32 for p in model_state(tmp_path / "run/checkpoints/last.pt").values()
               if p.is_floating_point())
    with pytest.raises(ConfigError, match="fp16.*use train.amp=bf16 on CPU"):
        Trainer(load_config(cfg_path, ["train.amp=fp16"]), tmp_path / "fp16", progress=False)


def test_non_finite_loss_with_amp_keeps_the_last_good_checkpoint(cfg_path, tmp_path):
    wd = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"non-finite loss at iteration (\d+) \(loss_out, loss_aux\)") as err:
        train(cfg_path, wd, "train.amp=bf16", "optimizer.lr=1e30", "train.max_iters=20",
              "train.checkpoint_interval=1", "data.val=null")
    failed = int(re.search(r"iteration (\d+)", str(err.value)).group(1))
    assert failed > 1
    state = load_checkpoint(wd / "checkpoints/last.pt")
    assert state["iteration"] == failed - 1  # the last iteration whose loss was finite
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (wd / "metrics.json").exists()
    assert not [p for p in (wd / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp files


def test_gradient_accumulation_equals_a_bigger_batch(cfg_path, tmp_path):
    common = ["model.norm=none", "model.dropout=0.0", "data.val=null", "train.max_iters=3",
              "optimizer.momentum=0.0"]
    train(cfg_path, tmp_path / "big", *common, "data.train.batch_size=4")
    train(cfg_path, tmp_path / "acc", *common, "data.train.batch_size=2", "train.grad_accum_steps=2")
    a, b = model_state(tmp_path / "big/checkpoints/last.pt"), model_state(tmp_path / "acc/checkpoints/last.pt")
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff < 1e-6, diff
    assert load_checkpoint(tmp_path / "acc/checkpoints/last.pt")["samples_seen"] == 12


def test_gradient_clipping_bounds_the_update(cfg_path, tmp_path):
    args = ["data.val=null", "train.max_iters=1", "optimizer.momentum=0.0", "optimizer.weight_decay=0.0",
            "scheduler={_delete_: true, name: constant}", "optimizer.lr=1.0"]
    t = Trainer(load_config(cfg_path, [*args, "train.clip_grad_norm=0.001"]), tmp_path / "run", progress=False)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.train()
    after = t.model.state_dict()
    step = torch.sqrt(sum(((after[k] - before[k]) ** 2).sum() for k, _ in t.model.named_parameters()))
    assert step.item() == pytest.approx(0.001, rel=1e-3)  # lr 1 x clipped norm
    line = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[0])
    assert line["grad_norm"] > 0.001  # the norm before clipping is logged


def test_ema_weights_are_evaluated_saved_and_loaded_for_inference(cfg_path, tmp_path):
    from segzoo.checkpoint import load_trained_model
    from segzoo.evaluation import evaluate

    cfg = load_config(cfg_path, ["train.ema={decay: 0.5, warmup: false}"])
    result = Trainer(cfg, tmp_path / "run", progress=False).train()
    state = load_checkpoint(result.checkpoint)
    assert state["ema"]["updates"] == 8
    assert any(not torch.equal(state["ema"]["module"][k], v) for k, v in state["model"].items())
    model, meta = load_trained_model(load_config(cfg_path), result.checkpoint)
    assert meta["weights"] == "ema"
    from segzoo import builders
    val = builders.dataset_from_split(cfg, cfg.data.val)
    loader = builders.build_dataloader(val, batch_size=2, shuffle=False)
    metrics = evaluate(model, loader, num_classes=4, ignore_index=255)
    assert metrics["mIoU"] == result.metrics["mIoU"] and metrics["pixel_acc"] == result.metrics["pixel_acc"]


def test_channels_last_and_compile(cfg_path, tmp_path, monkeypatch):
    calls = []
    real = torch.compile

    def eager_compile(model, **kwargs):  # dynamo graph capture without a C++ toolchain
        calls.append(kwargs)
        return real(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    t = Trainer(load_config(cfg_path, ["train.channels_last=true", "train.compile=true", "train.max_iters=2",
                                       "data.val=null"]), tmp_path / "run", progress=False)
    conv = t.model.backbone[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    t.train()
    assert calls == [{}]
    keys = list(model_state(tmp_path / "run/checkpoints/last.pt"))
    assert keys and not any(k.startswith(("_orig_mod", "module.")) for k in keys)
    monkeypatch.undo()  # the real torch.compile: a mode or backend it does not know fails at once
    with pytest.raises(ConfigError, match="'train.compile': unknown compile setting 'fastest'"):
        Trainer(load_config(cfg_path, ["train.compile=fastest"]), tmp_path / "bad", progress=False)
    with pytest.raises(ConfigError, match="'train.compile'.*nonesuch"):
        Trainer(load_config(cfg_path, ["train.compile=backend:nonesuch"]), tmp_path / "bad2", progress=False)
    t = Trainer(load_config(cfg_path, ["train.compile=backend:eager"]), tmp_path / "eager", progress=False)
    assert type(t.train_model).__name__ == "OptimizedModule"


def test_keep_last_snapshots_and_best_metric(cfg_path, tmp_path):
    result = train(cfg_path, tmp_path / "run", "train.keep_last=2", "train.best_metric=pixel_acc")
    ckpts = sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir())
    assert ckpts == ["best.pt", "iter_000006.pt", "iter_000008.pt", "last.pt"]
    best = load_checkpoint(tmp_path / "run/checkpoints/best.pt")
    assert set(best["best"]) == {"pixel_acc", "iteration"}
    assert best["best"]["pixel_acc"] >= result.metrics["pixel_acc"] - 1e-12
    with pytest.raises(ConfigError, match="best_metric.*mIoU, mean_acc, pixel_acc"):
        Trainer(load_config(cfg_path, ["train.best_metric=AP"]), tmp_path / "bad", progress=False)


def test_loss_weights_override_and_class_weights_from_the_training_set(cfg_path, tmp_path):
    wd = tmp_path / "run"
    train(cfg_path, wd, "train.loss_weights={aux: 0.0}", "loss.class_weights=median_frequency",
          "train.max_iters=2", "data.val=null", "train.log_interval=1")
    lines = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert all(x["loss_aux"] == 0.0 and x["loss_out"] > 0 for x in lines)
    stats = json.loads((wd / "label_stats.json").read_text())["stats"]
    assert len(stats[0]) == 4 and sum(stats[0]) == 10 * 32 * 32
    assert "class weights" in (wd / "train.log").read_text()
    (wd / "metrics.json").unlink()  # resumed: the statistics come from the run folder's cache
    train(cfg_path, wd, "train.loss_weights={aux: 0.0}", "loss.class_weights=median_frequency",
          "train.max_iters=3", "data.val=null")
    assert "label statistics read from" in (wd / "train.log").read_text()
    with pytest.raises(ConfigError, match="no training output 'aux2'"):
        Trainer(load_config(cfg_path, ["train.loss_weights={aux2: 1.0}"]), tmp_path / "bad", progress=False)


def test_several_losses_are_logged_term_by_term(cfg_path, tmp_path):
    wd = tmp_path / "run"
    train(cfg_path, wd, "loss=[{name: cross_entropy}, {name: dice, weight: 0.5}]", "model.aux=false",
          "train.max_iters=2", "data.val=null")
    line = json.loads((wd / "metrics.jsonl").read_text().splitlines()[0])
    assert {"loss_out_cross_entropy", "loss_out_dice", "loss"} <= set(line)
    assert [c.name for c in load_config(wd / "config.yaml").loss] == ["cross_entropy", "dice"]
    assert line["loss"] == pytest.approx(line["loss_out_cross_entropy"] + line["loss_out_dice"])


def test_tensorboard_has_losses_lr_throughput_memory_metrics_and_images(cfg_path, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(cfg_path, tmp_path / "run", "train.max_iters=4")
    acc = EventAccumulator(str(tmp_path / "run/tb"))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "train/loss_out", "train/loss_aux", "train/lr", "train/img_per_s",
                "train/rss_mb", "train/data_time", "val/mIoU", "val/pixel_acc", "val/IoU/circle"):
        assert tag in scalars, tag
    assert "val/sample_0" in acc.Tags()["images"]


def test_deterministic_runs_repeat_exactly(cfg_path, tmp_path):
    args = ["train.deterministic=true", "train.max_iters=3", "data.val=null"]
    train(cfg_path, tmp_path / "a", *args)
    train(cfg_path, tmp_path / "b", *args)
    a, b = model_state(tmp_path / "a/checkpoints/last.pt"), model_state(tmp_path / "b/checkpoints/last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.are_deterministic_algorithms_enabled()  # the global switch is restored


@pytest.mark.parametrize("setting, expected", [("auto", True), ("false", False), ("true", True)])
def test_cudnn_benchmark_during_training_follows_the_config(cfg_path, tmp_path, setting, expected):
    trainer = Trainer(load_config(cfg_path, [f"train.cudnn_benchmark={setting}", "train.max_iters=2",
                                             "data.val=null"]), tmp_path / "run", progress=False)
    seen, losses = [], trainer.task.losses

    def recording_losses(*args, **kwargs):
        seen.append(torch.backends.cudnn.benchmark)
        return losses(*args, **kwargs)

    trainer.task.losses = recording_losses
    before = torch.backends.cudnn.benchmark
    trainer.train()
    assert seen == [expected, expected]
    assert torch.backends.cudnn.benchmark == before  # the global switch is restored


def test_cudnn_benchmark_auto_is_off_for_detectors_and_deterministic_runs():
    assert cudnn_benchmark("auto", deterministic=False, task="semantic") is True
    assert cudnn_benchmark("auto", deterministic=False, task="instance") is False
    assert cudnn_benchmark("auto", deterministic=True, task="semantic") is False
    assert cudnn_benchmark(True, deterministic=False, task="instance") is True
    with pytest.raises(ValueError, match="'auto'"):
        cudnn_benchmark("yes", deterministic=False, task="semantic")


def test_cudnn_benchmark_true_with_deterministic_is_a_config_error(cfg_path, tmp_path):
    cfg = load_config(cfg_path, ["train.cudnn_benchmark=true", "train.deterministic=true"])
    with pytest.raises(ConfigError, match=r"'train.cudnn_benchmark'.*deterministic.*set one of them to false"):
        Trainer(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="train.cudnn_benchmark"):
        load_config(cfg_path, ["train.cudnn_benchmark=fast"])


def test_sync_bn_falls_back_to_batchnorm_where_it_cannot_work():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    same, note = convert_sync_bn(net, True, DistInfo(), torch.device("cpu"))
    assert same is net and "world size 1" in note
    same, note = convert_sync_bn(net, True, DistInfo(0, 2), torch.device("cpu"))
    assert isinstance(same[1], torch.nn.BatchNorm2d) and "needs CUDA" in note
    synced, note = convert_sync_bn(net, True, DistInfo(0, 2), torch.device("cuda", 0))
    assert isinstance(synced[1], torch.nn.SyncBatchNorm) and "2 processes" in note
    assert convert_sync_bn(net, False, DistInfo(0, 2), torch.device("cuda", 0)) == (net, "")


def test_graceful_stop_turns_the_first_sigterm_into_a_request():
    import os
    import signal
    import time

    from segzoo.engine.signals import GracefulStop

    before = signal.getsignal(signal.SIGTERM)
    with GracefulStop() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs between bytecodes of the main thread
        assert stop.requested and stop.name == "SIGTERM"
        assert signal.getsignal(signal.SIGTERM) == before  # a second one acts as before
    assert signal.getsignal(signal.SIGTERM) == before


def test_documented_config_example_validates(tmp_path):
    from conftest import DEMO_CONFIG, REPO

    text = (REPO / "docs" / "configs.md").read_text()
    example = re.search(r"Examples:\n\n```yaml\n(.*?)```", text, flags=re.S).group(1)
    path = tmp_path / "example.yaml"
    path.write_text(f"_base_: {DEMO_CONFIG}\n{example}")
    cfg = load_config(path)
    assert cfg.train.amp == "bf16" and cfg.optimizer.name == "adamw" and len(cfg.loss) == 2


def test_non_finite_weights_are_never_saved(cfg_path, tmp_path):
    t = Trainer(load_config(cfg_path, ["train.max_iters=2", "data.val=null"]), tmp_path / "run", progress=False)
    t.train()
    with torch.no_grad():
        t.model.decode_head[1].weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"non-finite weights after iteration 2 \(decode_head.1.weight\)"):
        t.save()
    state = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert state["iteration"] == 2 and torch.isfinite(state["model"]["decode_head.1.weight"]).all()


def test_a_save_cut_short_keeps_the_previous_checkpoint_and_leftovers_are_cleaned(cfg_path, tmp_path, monkeypatch):
    from segzoo.checkpoint import save_checkpoint

    path = tmp_path / "ck" / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "iteration": 1}, path)

    def partial_write(obj, f):  # some bytes reach the disk, then the writer dies
        f.write(b"\x80\x02partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", partial_write)
    with pytest.raises(CheckpointError, match="disk full; the previous last.pt is unchanged"):
        save_checkpoint({"model": {"w": torch.zeros(2)}, "iteration": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 1 and [p.name for p in path.parent.iterdir()] == ["last.pt"]

    wd = tmp_path / "run"  # a run killed during a save leaves its temp file; resuming removes it
    train(cfg_path, wd, "train.max_iters=2", "data.val=null")
    (wd / "metrics.json").unlink()
    (wd / "checkpoints" / ".last.pt.abc123.tmp").write_bytes(b"partial")
    train(cfg_path, wd, "train.max_iters=3", "data.val=null")
    assert not list((wd / "checkpoints").glob(".*.tmp"))
    assert "removed 1 partial checkpoint file" in (wd / "train.log").read_text()
