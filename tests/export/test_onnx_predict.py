"""`segzoo predict --backend onnxruntime --model model.onnx` writes the same label PNGs and overlays
as the PyTorch path, at image sizes other than the export size; the ONNX file carries the class
names, palette and normalisation."""

import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from helpers.version_marks import needs_dynamic_pooling
from PIL import Image

from segzoo.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _write_images(folder, sizes):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.png")


@needs_dynamic_pooling
def test_onnx_predict_writes_what_the_pytorch_path_writes(tiny_config, tiny_checkpoint, tmp_path, capsys):
    from segzoo.export.runtime import OnnxRuntimeModel

    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(tiny_config), "--checkpoint", str(tiny_checkpoint), "--output", str(onnx_path),
                 "--size", "32", "32", "--no-verify"]) == 0
    assert "not verified" in capsys.readouterr().out
    meta = OnnxRuntimeModel(onnx_path).meta
    assert meta["num_classes"] == 4 and len(meta["palette"]) == 4 and meta["min_input_size"] == 32
    _write_images(tmp_path / "images", [(32, 40), (45, 37), (64, 96)])  # none the export size
    common = ["predict", str(tiny_config), "--input", str(tmp_path / "images")]
    assert main([*common, "--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path / "pt")]) == 0
    assert main([*common, "--backend", "onnxruntime", "--model", str(onnx_path),
                 "--output", str(tmp_path / "ort"), "--batch-size", "2"]) == 0
    for i in range(3):
        for kind in ("labels", "overlays"):
            a = np.asarray(Image.open(tmp_path / "pt" / kind / f"img{i}.png"))
            b = np.asarray(Image.open(tmp_path / "ort" / kind / f"img{i}.png"))
            assert a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    lab = Image.open(tmp_path / "ort" / "labels" / "img1.png")
    assert lab.mode == "P" and lab.size == (37, 45)

    # docs/deployment.md's torch-free script (the tiny config has no val resize): same label PNGs
    doc = (REPO / "docs" / "deployment.md").read_text()
    script = next(b for b in re.findall(r"```python\n(.*?)```", doc, flags=re.S) if b.startswith("# deploy_onnx.py"))
    (tmp_path / "deploy_onnx.py").write_text(script)
    no_torch = "import runpy, sys; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0])"
    for i in range(3):
        out = tmp_path / f"bare{i}.png"
        subprocess.run([sys.executable, "-c", no_torch, str(tmp_path / "deploy_onnx.py"), str(onnx_path),
                        str(tmp_path / "images" / f"img{i}.png"), str(out)], check=True)
        a, b = Image.open(tmp_path / "pt" / "labels" / f"img{i}.png"), Image.open(out)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert a.getpalette()[:12] == b.getpalette()[:12]


def test_onnx_predict_errors(tiny_config, tmp_path, capsys):
    common = ["predict", str(tiny_config), "--input", str(tmp_path), "--output", str(tmp_path / "o")]
    assert main([*common, "--backend", "onnxruntime"]) == 2
    assert "needs --model model.onnx" in capsys.readouterr().err
    assert main([*common, "--backend", "onnxruntime", "--model", str(tmp_path / "missing.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(common) == 2
    assert "--checkpoint is required" in capsys.readouterr().err
