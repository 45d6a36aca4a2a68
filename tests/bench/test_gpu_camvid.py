"""benchmarks/gpu_camvid.py with a fixed iteration count (no probe), as a dry run on the CPU on a
synthetic pack in CamVid's layout (the GPU check runs it on the real pack)."""

import json
import subprocess
import sys

from conftest import REPO


def test_gpu_camvid_fixed_iterations_skip_the_probe(tmp_path):
    pack, out, work = tmp_path / "pack", tmp_path / "out", tmp_path / "work"
    subprocess.run([sys.executable, str(REPO / "benchmarks/pack_camvid.py"), "--synthetic", "4", "--out", str(pack)],
                   check=True, capture_output=True, timeout=120)
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_camvid.py"), "--device", "cpu", "--quick",
                           "--iters", "4", "--data", str(pack), "--out", str(out), "--work-dir", str(work)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    res = json.loads((out / "gpu_camvid.json").read_text())
    assert not (work / "probe").exists() and res["probe_iters"] == 0 and res["max_iters"] == 4
    assert [it for it, _ in res["losses"]] == [1, 2, 3, 4]  # quick logs every iteration
    assert res["val"]["num_images"] == 4 and 0 <= res["val"]["mIoU"] <= 1
    assert "4 iterations (`--iters`), no probe." in (out / "gpu_camvid.md").read_text()
