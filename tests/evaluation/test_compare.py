"""`segzoo compare`: both rows for a semantic and an instance model in one table."""

import json

import torch
from conftest import CONFIGS, StubInstanceModel

from segzoo.checkpoint import save_checkpoint
from segzoo.cli import main
from segzoo.config import load_config, save_config
from segzoo.evaluation.tables import format_table
from segzoo.models import fcn8s


def make_run(folder, config, model, meta=None):
    (folder / "checkpoints").mkdir(parents=True)
    save_config(load_config(config), folder / "config.yaml")
    save_checkpoint({"model": model.state_dict(), "iteration": 3, "meta": meta or {}},
                    folder / "checkpoints" / "last.pt")
    return folder


def test_compare_semantic_and_instance_runs(stub_instance, tiny_config, tmp_path, capsys):
    torch.manual_seed(0)
    sem = make_run(tmp_path / "fcn", tiny_config,
                   fcn8s(num_classes=4, backbone="vgg16_bn", fc_channels=16, fc_kernel_size=1),
                   {"num_classes": 4})
    inst_cfg = tmp_path / "stub.yaml"
    inst_cfg.write_text(f"_base_: {CONFIGS / '_base_/datasets/shapes-64x64.yaml'}\n"
                        "model: {name: stub_instance}\n"
                        "data: {val: {dataset: {num_images: 3, size: [32, 32]}}}\n"
                        "train: {device: cpu}\n")
    inst = make_run(tmp_path / "stub", inst_cfg, StubInstanceModel(4), {"num_classes": 4})
    out = tmp_path / "table.md"
    assert main(["compare", str(sem), str(inst), "--out", str(out)]) == 0
    table = out.read_text().splitlines()
    assert table[0].startswith("| model | task | iters | mIoU |") and len(table) == 4
    assert table[2].startswith("| fcn8s | semantic | 3 |") and "instance: connected components" in table[2]
    assert table[3].startswith("| stub_instance | instance | 3 |") and "semantic: pasted masks" in table[3]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["num_images"] for r in rows] == [4, 3]
    for r in rows:
        assert 0 <= r["mIoU"] <= 1 and (0 <= r["mask_AP"] <= 1)
    # the stub's one square of class 2 per image: every shape it misses costs recall
    assert rows[1]["mask_AP"] < 0.5


def test_format_table_marks_missing_values():
    line = format_table([{"model": "m", "task": "semantic", "iteration": 1, "mIoU": 0.5,
                          "mask_AP": float("nan")}]).splitlines()[2]
    assert line.startswith("| m | semantic | 1 | 50.0 | n/a |") and "| n/a |" in line


def test_compare_refuses_folders_that_are_not_runs(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_format_table_adds_keypoint_columns_when_a_run_has_them():
    rows = [{"model": "maskrcnn", "task": "instance", "iteration": 2, "mIoU": 0.25, "mask_AP": 0.5, "bbox_AP": 0.625},
            {"model": "keypointrcnn", "task": "instance", "iteration": 3, "mIoU": 0.125, "bbox_AP": 0.75,
             "kp_AP": 0.375, "kp_AP50": 0.5, "kp_AP75": 0.25}]
    head, _, mask_row, kp_row = format_table(rows).splitlines()
    assert head.endswith("| box AP | kp AP | kp AP50 | kp AP75 | derived row |")
    assert mask_row.endswith("| 62.5 | n/a | n/a | n/a | semantic: pasted masks |")
    assert kp_row.endswith("| n/a | n/a | n/a | 75.0 | 37.5 | 50.0 | 25.0 | semantic: pasted boxes |")
    assert "kp AP" not in format_table(rows[:1])  # no keypoint run: no keypoint columns
