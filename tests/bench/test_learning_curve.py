"""benchmarks/learning_curve.py: val rows of a run, the log-linear budget, the doc section."""

import json
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import learning_curve  # noqa: E402


def test_curve_fit_budget_and_section(tmp_path):
    run = tmp_path / "fcn8s_mobilenetv2"
    run.mkdir()
    rows = [{"iter": i, "mode": "train", "loss": 1.0} for i in (50, 100)]
    # 5 points over a second half doubling-linear: +5 points of mIoU per doubling from 400 on
    for it, m in ((100, 0.20), (200, 0.33), (400, 0.40), (800, 0.45), (1600, 0.50)):
        rows.append({"iter": it, "mode": "val", "mIoU": m, "mBIoU": m / 2, "IoU": {"pole": 0.01, "pedestrian": 0.1}})
    rows.append({"iter": 1600, "mode": "val", "mIoU": 0.50, "mBIoU": 0.25, "IoU": {}})  # a resume's repeat
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    doc = tmp_path / "comparison.md"
    doc.write_text("# c\n")
    assert learning_curve.main([str(run), "--target", "0.6", "--doc", str(doc), "--results-dir",
                                str(tmp_path / "res"), "--img", str(tmp_path / "c.png")]) == 0
    result = json.loads((tmp_path / "res" / "fcn8s_mobilenetv2.json").read_text())
    assert result["iterations"] == [100, 200, 400, 800, 1600]
    assert result["fit"]["per_doubling"] == pytest.approx(0.05)
    assert result["extrapolated_iterations"] == 6400  # two more doublings to go from 0.50 to 0.60
    text = doc.read_text()
    assert "<!-- learning-curve:camvid-cpu:start -->" in text and "| val mIoU | 20.0 | 33.0 | 40.0 | 45.0 | 50.0 |" in text
    assert "about 6400 iterations (4.0x this run)" in text and (tmp_path / "c.png").stat().st_size > 0
    assert learning_curve.budget((-0.01, 0.5), 0.6) is None and learning_curve.fit([100], [0.1]) is None
    with pytest.raises(SystemExit, match="no val rows"):
        (run / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
        learning_curve.curve(run, 0.6)
