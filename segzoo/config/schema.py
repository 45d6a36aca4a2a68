"""Typed config objects. Every key a config file may hold is a field here or a keyword argument
of a registered builder (model, dataset, transform, loss, optimizer, scheduler).

Layout of a config (see configs/ and docs/configs.md)::

    model:     {name: fcn8s, backbone: vgg16, ...builder kwargs}   # num_classes from the dataset
    data:      {train: {dataset: {name: ...}, transforms: [...], batch_size: 8}, val: {...},
                num_workers: 2, ignore_index: 255, mean: [...], std: [...]}
    loss:      {name: cross_entropy, ...} or [{name: cross_entropy, weight: 1.0}, {name: dice, ...}]
    optimizer: {name: sgd, lr: 0.01, ...}
    scheduler: {name: poly, power: 0.9, warmup_iters: 0, ...}
    train:     {max_iters: 1000, eval_interval: 500, amp: bf16, ema: {decay: 0.999}, ...}
    eval:      {mode: whole, crop_size: null, stride: null, tta: {flip: false, scales: [1.0]}, ...}
    work_dir:  null
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

from segzoo.constants import IMAGENET_MEAN, IMAGENET_STD


def registry_field(registry: str, *, factory: Any = None) -> Any:
    """A dataclass field holding component(s) built from the named registry; required unless
    ``factory`` gives a default."""
    meta = {"registry": registry}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(metadata=meta)


@dataclass
class Component:
    """A registered builder and its keyword arguments; written ``{name: ..., **kwargs}``."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.kwargs}


@dataclass
class SplitConfig:
    """One data split: its dataset, joint transforms and batching."""

    dataset: Component = registry_field("dataset")
    transforms: list[Component] = registry_field("transform", factory=list)
    batch_size: int = 2
    shuffle: bool | None = None  # None: shuffle the train split only


@dataclass
class DataConfig:
    """Datasets and what every split shares."""

    train: SplitConfig | None = None
    val: SplitConfig | None = None
    num_workers: int = 2
    ignore_index: int = 255
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))


@dataclass
class EMAConfig:
    """``train.ema``: an exponential moving average of the weights, used for evaluation."""

    decay: float = 0.9999
    warmup: bool = True  # decay ramps up as min(decay, (1 + t) / (10 + t))


@dataclass
class TrainConfig:
    """The iteration-based schedule and run options (docs/training.md)."""

    max_iters: int = 1000  # optimizer steps
    log_interval: int = 10
    eval_interval: int = 0  # 0: evaluate only at the end
    checkpoint_interval: int = 0  # 0: checkpoint only at evaluations and at the end
    keep_last: int = 0  # iteration snapshots iter_XXXXXX.pt kept besides last.pt and best.pt
    best_metric: str | None = None  # metric that picks best.pt (higher is better); None: mIoU
    seed: int = 0
    deterministic: bool = False  # deterministic algorithms (slower on GPU)
    cudnn_benchmark: bool | Literal["auto"] = "auto"  # cuDNN autotuning; auto: semantic models only
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    amp: Literal["bf16", "fp16"] | None = None  # mixed precision; fp16 is CUDA-only
    channels_last: bool = False
    compile: bool | str = False  # torch.compile: true, or a mode such as "max-autotune"
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    clip_grad_norm: float | None = None  # max total gradient L2 norm
    ema: EMAConfig | None = None
    sync_bn: bool = False  # SyncBatchNorm with several CUDA processes
    find_unused_parameters: bool = False  # DDP option for models with unused branches
    loss_weights: dict[str, float] | None = None  # per model output, e.g. {aux: 0.4}
    num_vis: int = 4  # prediction overlays written at each evaluation


# ---- evaluation and inference (docs/evaluation.md) ---------------------------------
@dataclass
class TTAConfig:
    """``eval.tta``: test-time augmentation, logits averaged over every (scale, flip) pass."""

    flip: bool = False  # also predict the left-right mirrored image
    scales: list[float] = field(default_factory=lambda: [1.0])  # image scale factors


@dataclass
class EvalConfig:
    """``eval``: how models are run and scored at evaluation, ``segzoo eval`` and ``predict``."""

    mode: Literal["whole", "slide"] = "whole"
    crop_size: list[int] | None = None  # [H, W] window of slide mode (input tile if valid padding)
    stride: list[int] | None = None  # [H, W] window step; null: 2/3 of crop_size (output tile if valid)
    batch_size: int = 8  # windows per forward pass in slide mode
    tta: TTAConfig = field(default_factory=TTAConfig)
    original_size: bool = True  # score at the label's original size when the val pipeline resizes
    boundary_iou: bool = True  # also report boundary IoU (bIoU per class, mBIoU)
    boundary_dilation_ratio: float = 0.02  # boundary width / image diagonal (detectron2's 0.02)
    cross_task: bool = False  # also score the other task (semantic <-> instance) at evaluation
    score_threshold: float = 0.5  # instance -> semantic: detections pasted from this score up
    min_area: int = 1  # semantic -> instances: smallest connected component kept (pixels)
    connectivity: Literal[4, 8] = 8  # semantic -> instances: pixel neighbourhood of components
    instance_decoder: Literal["components", "contour"] = "components"  # semantic -> instances: how
    #   (contour: seeds without the dataset's contour class, grown back; instance_folder contour: true)
    nuclei_metrics: bool = False  # also foreground IoU/Dice/bIoU, DSB 2018 mAP and merged-object count


@dataclass
class Config:
    """A complete, validated run configuration."""

    model: Component = registry_field("model")
    data: DataConfig = field(default_factory=DataConfig)
    loss: Component | list[Component] = registry_field("loss", factory=lambda: Component("cross_entropy"))
    optimizer: Component = registry_field("optimizer", factory=lambda: Component("sgd"))
    scheduler: Component = registry_field("scheduler", factory=lambda: Component("poly"))
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    work_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) that reloads to an equal config."""
        return _plain(self)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Component):
        return _plain(obj.to_dict())
    if is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two config dicts (``to_dict`` form)."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k), new.get(k)
        key = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, key + ".")
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out
