"""Bad input gets a one-line ``segzoo <command>: error:`` and exit code 2, or is handled: non-finite
outputs, out-of-range predictions, checkpoints that do not fit the config, values no run can use,
images below a model's minimum size, unwritable paths, and a predict folder with bad images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.tiny_model import write_tiny_config
from PIL import Image

from segzoo.checkpoint import load_checkpoint, save_checkpoint
from segzoo.cli import main
from segzoo.config import load_config
from segzoo.engine import Trainer
from segzoo.errors import CheckpointError, ConfigError, NonFiniteError
from segzoo.evaluation.evaluator import Scorer
from segzoo.metrics import ConfusionMatrix


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-iteration tiny_seg run (SGD) with its config, run folder and checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    cfg_path = write_tiny_config(root / "cfg", extra="train: {max_iters: 2, eval_interval: 0}\n")
    Trainer(load_config(cfg_path), root / "run", progress=False).train()
    return cfg_path, root / "run", root / "run" / "checkpoints" / "last.pt"


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out + out.err


# ---- non-finite outputs (item 8) and out-of-range predictions (item 9)
def test_checkpoint_with_nan_weights_is_refused_by_eval(trained, tmp_path, capsys):
    cfg, _, ckpt = trained
    state = load_checkpoint(ckpt)
    next(v for v in state["model"].values() if v.is_floating_point()).fill_(float("nan"))
    bad = save_checkpoint(state, tmp_path / "nan.pt")
    code, out = run_cli(capsys, "eval", cfg, "--checkpoint", bad)
    assert code == 2 and "non-finite (NaN/inf) weights" in out and "mIoU" not in out


class NaNModel(torch.nn.Module):
    task = "semantic"

    def forward(self, x):
        out = torch.zeros(x.shape[0], 3, *x.shape[-2:])
        out[:, :, 0, 0] = float("nan")
        return out


def test_non_finite_logits_are_an_error_not_class_zero():
    ev = Scorer(num_classes=3, ignore_index=255)
    batch = {"image": torch.zeros(1, 3, 8, 8), "mask": torch.zeros(1, 8, 8, dtype=torch.long),
             "meta": [{"image_path": "a.png"}]}
    with pytest.raises(NonFiniteError, match=r"3 non-finite .* for a\.png"):
        ev.update(NaNModel().eval(), batch, "cpu")


def test_predictions_out_of_range_on_ignored_pixels_are_rejected():
    cm = ConfusionMatrix(3, ignore_index=255)
    target = torch.tensor([[0, 1, 255]])
    with pytest.raises(ValueError, match=r"predictions \[7\] lie outside \[0, 3\)"):
        cm.update(torch.tensor([[0, 1, 7]]), target)  # the 7 sits on an ignored pixel
    cm.update(torch.tensor([[0, 1, 2]]), target)
    assert int(cm.matrix.sum()) == 2


# ---- checkpoints that do not fit the config (item 10)
def test_checkpoint_of_another_model_is_named_in_one_line(trained, tmp_path, capsys):
    cfg, run, ckpt = trained
    other = write_tiny_config(tmp_path / "other", extra="model: {width: 16}\n")
    code, out = run_cli(capsys, "eval", other, "--checkpoint", ckpt)
    assert code == 2
    assert "(model.width: None -> 16)" in out and str(run / "config.yaml") in out
    assert len(out.strip().splitlines()) == 1


def test_bare_state_dict_of_another_width_gives_a_short_key_summary(trained, tmp_path, capsys):
    cfg, _, ckpt = trained
    bare = save_checkpoint({"model": load_checkpoint(ckpt)["model"]}, tmp_path / "bare.pt")
    other = write_tiny_config(tmp_path / "other", extra="model: {width: 16}\n")
    code, out = run_cli(capsys, "eval", other, "--checkpoint", bare)
    assert code == 2 and "shape mismatches, checkpoint vs model" in out
    assert len(out.strip().splitlines()) == 1


def test_checkpoint_with_another_number_of_classes_fails_before_evaluating(trained, tmp_path, capsys):
    cfg, _, ckpt = trained
    state = load_checkpoint(ckpt)
    state["meta"] = {**state["meta"], "num_classes": 3, "class_names": ["a", "b", "c"]}
    state["config"]["model"]["num_classes"] = 3
    from helpers.tiny_model import tiny_seg

    state["model"] = tiny_seg(num_classes=3).state_dict()
    bad = save_checkpoint(state, tmp_path / "three.pt")
    code, out = run_cli(capsys, "eval", cfg, "--checkpoint", bad)
    assert code == 2 and "predicts 3 classes (a, b, c), the config's val dataset has 4" in out
    assert "mIoU" not in out


def test_resuming_with_another_optimizer_is_a_checkpoint_error(tmp_path):
    cfg = write_tiny_config(tmp_path / "cfg", extra="train: {max_iters: 4, checkpoint_interval: 2}\n")
    run = tmp_path / "run"
    Trainer(load_config(cfg, ["train.max_iters=2"]), run, progress=False).train()
    (run / "metrics.json").unlink()  # an unfinished run with its checkpoint at iteration 2
    with pytest.raises(CheckpointError, match="trained with optimizer 'sgd', this config asks for 'adamw'"):
        Trainer(load_config(cfg, ["optimizer={_delete_: true, name: adamw, lr: 0.001}"]), run,
                progress=False)


# ---- values no run can use, found when the config loads (item 11)
@pytest.mark.parametrize("override, key", [
    ("optimizer.lr=-0.01", "optimizer.lr"),
    ("optimizer.lr=0", "optimizer.lr"),
    ("data.train.batch_size=0", "data.train.batch_size"),
    ("data.std=[0.2, 0.0, 0.2]", "data.std"),
    ("train.eval_interval=-5", "train.eval_interval"),
    ("train.checkpoint_interval=-1", "train.checkpoint_interval"),
    ("model.num_classes=4", "data.ignore_index"),
])
def test_values_no_run_can_use_fail_at_load_time(tmp_path, override, key):
    cfg = write_tiny_config(tmp_path / "cfg")
    extra = ["data.ignore_index=2"] if key == "data.ignore_index" else []
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(cfg, [override, *extra])


def test_ignore_index_equal_to_a_dataset_class_is_refused(tmp_path):
    cfg = load_config(write_tiny_config(tmp_path / "cfg"), ["data.ignore_index=1"])
    with pytest.raises(ConfigError, match=r"'data.ignore_index' is 1, a real class .*'circle'"):
        Trainer(cfg, tmp_path / "run", progress=False)


def test_empty_class_names_fail_at_load_time(tmp_path):
    cfg = write_tiny_config(tmp_path / "cfg", extra=(
        "data:\n  train:\n    dataset: {_delete_: true, name: folder, root: x, class_names: []}\n"))
    with pytest.raises(ConfigError, match="class_names.*empty"):
        load_config(cfg)


def test_images_below_the_minimum_size_say_the_minimum_in_train_eval_and_predict(tmp_path, capsys):
    # fcn8s on VGG has output stride 32: 16x16 images cannot be segmented
    from conftest import DEMO_CONFIG, TINY_OVERRIDES

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_OVERRIDES.format(base=DEMO_CONFIG))
    small = ["data.train.dataset.size=[16, 16]", "data.train.transforms=[]", "data.num_workers=0"]
    code, out = run_cli(capsys, "train", cfg, "--work-dir", tmp_path / "run", "--set", *small)
    assert code == 2 and "16x16 pixels, below the 32x32 that fcn8s needs" in out and "resize" in out
    from segzoo.models import fcn8s

    ckpt = save_checkpoint({"model": fcn8s(num_classes=4, backbone="vgg16_bn", fc_channels=16,
                                           fc_kernel_size=1).state_dict()}, tmp_path / "w.pt")
    code, out = run_cli(capsys, "eval", cfg, "--checkpoint", ckpt, "--set",
                        "data.val.dataset.size=[16, 16]", "data.num_workers=0")
    assert code == 2 and "below the 32x32" in out and "eval.mode: slide" in out
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(tmp_path / "small.png")
    code, out = run_cli(capsys, "predict", cfg, "--checkpoint", ckpt, "--input", tmp_path / "small.png",
                        "--output", tmp_path / "pred")
    assert code == 2 and "16x20 pixels, below the 32x32" in out


def test_unwritable_work_dir_is_an_error_line(trained, tmp_path, capsys):
    cfg, _, _ = trained
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, out = run_cli(capsys, "train", cfg, "--work-dir", blocker / "run")
    assert code == 2 and "segzoo train: error:" in out and str(blocker) in out


# ---- predict goes on past bad images (item 13) and keeps same-stem outputs apart (item 6)
def test_predict_writes_every_good_image_and_lists_the_bad_ones(trained, tmp_path, capsys):
    cfg, _, ckpt = trained
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "x.png", "x.jpg", "z.png"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(images / name)
    (images / "broken.png").write_bytes(b"not an image")
    out_dir = tmp_path / "pred"
    code, out = run_cli(capsys, "predict", cfg, "--checkpoint", ckpt, "--input", images,
                        "--output", out_dir)
    assert code == 2
    assert "1 image(s) could not be predicted (4 written)" in out and "broken.png" in out
    written = sorted(p.name for p in (out_dir / "labels").iterdir())
    assert written == ["a.png", "x.jpg.png", "x.png.png", "z.png"]
    assert len(list((out_dir / "overlays").iterdir())) == 4
