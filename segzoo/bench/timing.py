"""Timing: inference and training-step callables, and interleaved repeated runs.

On a shared, noisy machine one model's absolute latency moves with the load, so models are compared
only within one process, their runs interleaved (round r runs the candidates in an order rotated
by r) and compared through the per-round ratios: a load change between rounds cancels out.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segzoo.bench.machine import synchronize
from segzoo.export.deploy import DeployedModel, main_output

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def summarize(values: Sequence[float]) -> dict:
    """median, quartiles (p25, p75; inclusive method), min and max of ``values``."""
    v = sorted(values)
    if len(v) >= 2:
        q = statistics.quantiles(v, n=4, method="inclusive")
        p25, p75 = q[0], q[2]
    else:
        p25 = p75 = v[0]
    return {"median": statistics.median(v), "p25": p25, "p75": p75, "min": v[0], "max": v[-1],
            "n": len(v)}


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def model_task(model: nn.Module) -> str:
    """``"instance"`` for models following torchvision's detection contract (``model.task`` of
    segzoo's Mask R-CNN, or a torchvision ``GeneralizedRCNN``), else ``"semantic"``."""
    inner = getattr(model, "model", model) if isinstance(model, DeployedModel) else model
    task = getattr(inner, "task", None)
    if task:
        return task
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

    return "instance" if isinstance(inner, GeneralizedRCNN) else "semantic"


def model_inputs(model: nn.Module, images: Tensor) -> Tensor | list[Tensor]:
    """What the model's forward takes: the (B, 3, H, W) batch, or a list of B (3, H, W) images
    for instance models (torchvision's detection contract)."""
    return list(images) if model_task(model) == "instance" else images


def inference_step(model: nn.Module, images: Tensor, dtype: torch.dtype | None) -> Callable[[], Tensor]:
    """One eval forward under ``torch.inference_mode`` (and autocast to ``dtype``). A
    :class:`~segzoo.export.deploy.DeployedModel` brings its own mode and dtype. Returns the main
    output (logits; the first image's first tensor for instance models)."""
    device = images.device
    inputs = model_inputs(model, images)
    if isinstance(model, DeployedModel):
        return lambda: main_output(model(inputs))

    def step() -> Tensor:
        with torch.inference_mode(), _autocast(device, dtype):
            return main_output(model(inputs))

    return step


def instance_targets(images: Tensor, num_classes: int, per_image: int = 3,
                     num_keypoints: int | None = None) -> list[dict]:
    """Fixed synthetic detection targets (boxes, labels 1..K-1, box-shaped masks, and with
    ``num_keypoints`` visible keypoints inside each box) per image."""
    g = torch.Generator().manual_seed(0)
    _, _, h, w = images.shape
    targets = []
    for _ in range(images.shape[0]):
        xy = torch.rand(per_image, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = torch.rand(per_image, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3]) + 8
        boxes = torch.cat([xy, xy + wh], 1).round()
        masks = torch.zeros(per_image, h, w, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
            masks[k, y1:y2, x1:x2] = 1
        labels = torch.randint(1, max(num_classes, 2), (per_image,), generator=g)
        target = {"boxes": boxes, "labels": labels, "masks": masks}
        if num_keypoints:
            u = torch.rand(per_image, num_keypoints, 2, generator=g)
            xy = boxes[:, None, :2] + u * (boxes[:, None, 2:] - boxes[:, None, :2])
            target["keypoints"] = torch.cat([xy, torch.full_like(xy[..., :1], 2.0)], -1)
        targets.append({k: v.to(images.device) for k, v in target.items()})
    return targets


def training_step(model: nn.Module, images: Tensor, dtype: torch.dtype | None,
                  num_classes: int) -> Callable[[], Tensor]:
    """One training iteration: forward (training mode, autocast to ``dtype``), cross-entropy
    of every output weighted by ``model.loss_weights`` (segzoo) or of ``"out"`` (others) against
    fixed random labels, backward, SGD step (momentum 0.9). Instance models: the sum of the loss
    dict of ``model(images, targets)`` on fixed synthetic targets (:func:`instance_targets`).
    In float16 the loss is scaled by a :class:`torch.amp.GradScaler`, as the engine's
    ``train.amp: fp16`` does (its overflow check costs a host sync a step)."""
    if isinstance(model, DeployedModel):
        raise ValueError("a deployed model is inference-only; time the training step on the original")
    device = images.device
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)

    def update(loss: Tensor) -> None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    if model_task(model) == "instance":
        inputs = list(images)
        targets = instance_targets(images, num_classes, num_keypoints=getattr(model, "num_keypoints", None))

        def detection_step() -> Tensor:
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, dtype):
                loss = sum(model(inputs, targets).values())
            update(loss)
            return loss.detach()

        return detection_step
    labels = torch.randint(0, num_classes, (images.shape[0], *images.shape[-2:]), device=device,
                           generator=torch.Generator(device=device).manual_seed(0))
    weights = getattr(model, "loss_weights", None)

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            out = model(images)
            if isinstance(out, Tensor):
                loss = F.cross_entropy(out.float(), labels)
            else:
                keys = weights or {"out": 1.0}
                loss = sum(w * F.cross_entropy(out[k].float(), labels) for k, w in keys.items() if k in out)
        update(loss)
        return loss.detach()

    return step


def run_interleaved(steps: Sequence[Callable[[], object]], *, warmup: int, repeats: int,
                    device: torch.device) -> list[list[float]]:
    """Seconds per call of each step: ``warmup`` untimed rounds, then ``repeats`` timed rounds;
    round r runs the steps in the order rotated by r. Returns one list of times per step."""
    n = len(steps)
    times: list[list[float]] = [[] for _ in range(n)]
    for r in range(warmup + repeats):
        for k in range(n):
            i = (k + r) % n
            synchronize(device)
            t0 = time.perf_counter()
            steps[i]()
            synchronize(device)
            if r >= warmup:
                times[i].append(time.perf_counter() - t0)
    return times


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> dict:
    """Per-round ratios a[r] / b[r] summarised (:func:`summarize`); the median is the reported
    ratio (robust to a load change between rounds)."""
    return summarize([x / y for x, y in zip(a, b)])


def profile_run(fn: Callable[[], object], device: torch.device, *, calls: int = 1,
                top: int = 15) -> tuple[str, dict[str, int]]:
    """torch.profiler over ``calls`` calls of ``fn`` (run it after the timed runs).

    Returns:
        (table, op_calls): the table of the ``top`` operators and kernels by self time on the
        device (self CPU time on the CPU), and how many times each operator ran over all events
        (``{"aten::convolution": 212, "segzoo::bilinear_resize": 4, ...}``; a compiled model's
        extern kernels are recorded under their operators' names too).

    When ``fn`` ran torch.compile'd code, the table's last line says how often it entered a
    compiled region ("Torch-Compiled Region entered N times in C calls"), whether or not that
    row is among the ``top``: the proof that a compiled twin's steps ran compiled."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(calls):
            fn()
        synchronize(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    table = events.table(sort_by=key, row_limit=top, max_name_column_width=50)
    op_calls = {e.key: e.count for e in events}
    entered = sum(n for k, n in op_calls.items() if k.startswith("Torch-Compiled Region"))
    if entered:
        table = table.rstrip("\n") + f"\nTorch-Compiled Region entered {entered} times in {calls} calls\n"
    return table, op_calls


def profile_table(fn: Callable[[], object], device: torch.device, *, calls: int = 1, top: int = 15) -> str:
    """The table of :func:`profile_run`."""
    return profile_run(fn, device, calls=calls, top=top)[0]
