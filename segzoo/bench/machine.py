"""Where a benchmark ran: host, CPU model and cores, GPU, versions, date, load average; and the
machine's measured matrix-multiply speed (the FLOP-bound floor of every model's latency)."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(device: str = "cpu") -> dict:
    """A JSON-able record of the machine, versions and time of a benchmark run."""
    import torchvision

    info = {
        "host": platform.node() or "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average": load_average(),
        "device": device,
        "gpu": None,
    }
    for name in ("timm", "segmentation_models_pytorch"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    info["segzoo_commit"] = _git_commit()
    if device.startswith("cuda") and torch.cuda.is_available():
        info.update(gpu_info(torch.device(device)))
    return info


def gpu_info(device: torch.device) -> dict:
    """The GPU's name, memory, compute capability, driver, CUDA and cuDNN versions, and the TF32
    switches in force (``fp32`` convolutions use TF32 tensor cores when cuDNN's is on, torch's
    default; matrix products only when ``matmul.allow_tf32`` is)."""
    props = torch.cuda.get_device_properties(device)
    return {
        "gpu": torch.cuda.get_device_name(device),
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "gpu_capability": f"{props.major}.{props.minor}",
        "gpu_driver": _nvidia_driver(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
    }


def _nvidia_driver() -> str | None:
    """The NVIDIA driver version (``nvidia-smi``), None where it cannot be asked."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _git_commit() -> str | None:
    """The commit of the segzoo checkout in use (None outside a git checkout)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() + ("+dirty" if dirty else "")) if out.returncode == 0 else None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  n: int | None = None, repeats: int = 5) -> float:
    """Measured GFLOP/s of an (n x n) @ (n x n) matrix product (2 n^3 FLOPs), the median of
    ``repeats`` after one warm-up; n = 2048 on CPU, 8192 on CUDA by default. This is the
    machine's practical peak, so GFLOPs / this = the FLOP-bound floor of a model's latency."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9
