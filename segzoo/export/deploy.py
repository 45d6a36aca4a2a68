"""Deploy mode: an inference-only copy of a model with conv+BN fused, channels_last memory format,
``torch.inference_mode`` and optionally ``torch.compile`` / bfloat16 autocast.

    from segzoo.export.deploy import optimize_for_inference

    fast = optimize_for_inference(model)                  # fuse BN, channels_last, inference_mode
    fast = optimize_for_inference(model, dtype="bf16")    # + bfloat16 autocast (GPU; CPU with AMX)
    logits = fast(images)                                  # same contract as model.eval()(images)

**Conv + BN fusion.** In eval mode a BatchNorm is an affine map per channel, so a Conv2d whose
output goes straight into a BatchNorm can absorb it: ``w' = w * g / sqrt(var + eps)``,
``b' = (b - mean) * g / sqrt(var + eps) + beta`` (``torch.nn.utils.fusion.fuse_conv_bn_weights``);
the BatchNorm becomes an ``nn.Identity``. Which conv feeds which BatchNorm is found by running one
forward pass on an example input with hooks: a BatchNorm is fused into a conv when its input is
exactly that conv's output tensor and no other module reads that tensor. This finds the pairs
whether they sit in an ``nn.Sequential`` (our ``ConvNormAct``, torchvision's
``Conv2dNormActivation``, smp's ``Conv2dReLU``) or are attributes called in a ``forward`` (ResNet
blocks: ``bn1(conv1(x))``), in segzoo, torchvision, timm and smp models alike. timm's
``BatchNormAct2d`` (BN + activation in one module) fuses too: it is replaced by its activation.
A conv output also used by a plain function (``conv(x) + bn(conv(x))``-like code) would be missed
by the hooks; :func:`optimize_for_inference` therefore compares the fused model's output with the
original's on the example input and raises if they differ (``check=True``).

Training-only modules (an ``auxiliary_head``) are not run in eval mode, so their BatchNorms are
left as they are; they cost nothing at inference.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from segzoo.compiling import compile_kwargs, compile_module

DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
          "float16": torch.float16, "fp32": None, "float32": None, None: None}


@dataclass
class FusionReport:
    """What :func:`fuse_conv_bn` did: the fused (conv, bn) module names and the BatchNorms left
    (never run on the example input, or not fed by a conv alone)."""

    fused: list[tuple[str, str]] = field(default_factory=list)
    unfused: list[str] = field(default_factory=list)


def _is_bn(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats


def _replacement(bn: nn.Module) -> nn.Module | None:
    """What replaces a fused BatchNorm: Identity for plain BN/SyncBN; the activation (and drop) of
    timm's BatchNormAct2d; ``None`` for other BN subclasses (not fused: unknown forward)."""
    if type(bn) in (nn.BatchNorm2d, nn.SyncBatchNorm):
        return nn.Identity()
    if type(bn).__name__ == "BatchNormAct2d" and hasattr(bn, "act") and hasattr(bn, "drop"):
        return nn.Sequential(bn.drop, bn.act)
    return None


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def find_conv_bn_pairs(model: nn.Module,
                       example: Tensor | list[Tensor]) -> tuple[list[tuple[str, str]], list[str]]:
    """Run ``model`` once on ``example`` (eval mode, no grad) and return the (conv, bn) name pairs
    where the BatchNorm's input is the conv's output and nothing else reads it, plus the names of
    the other BatchNorms. The model's mode is restored."""
    names = {m: n for n, m in model.named_modules()}
    conv_of: dict[int, tuple[nn.Module, Tensor]] = {}   # id(output) -> (conv, output)
    readers: dict[int, int] = {}                          # id(tensor) -> modules reading it
    calls: dict[nn.Module, set] = {}                      # bn -> convs feeding it (one per call)
    hooks = []

    def on_input(module: nn.Module, args: tuple) -> None:
        for a in args:
            if isinstance(a, Tensor):
                readers[id(a)] = readers.get(id(a), 0) + 1

    def on_conv(module: nn.Module, args: tuple, out: Tensor) -> None:
        conv_of[id(out)] = (module, out)  # kept alive, so no later tensor takes its id
        readers[id(out)] = 0  # a new tensor: forget reads of a freed one that had this id

    def on_bn(module: nn.Module, args: tuple, out: Tensor) -> None:
        src = conv_of.get(id(args[0])) if args and isinstance(args[0], Tensor) else None
        calls.setdefault(module, set()).add((src[0] if src else None, id(args[0])))

    for m in model.modules():
        if not list(m.children()) or _is_bn(m):  # leaves (containers pass inputs on), BN+act
            hooks.append(m.register_forward_pre_hook(on_input))
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(on_conv))
        elif _is_bn(m):
            hooks.append(m.register_forward_hook(on_bn))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    pairs, used_convs, left = [], set(), []
    for m in model.modules():
        if not _is_bn(m):
            continue
        feeds = calls.get(m, set())
        convs = {c for c, _ in feeds}
        ok = (len(convs) == 1 and None not in convs
              and all(readers.get(t, 0) == 1 for _, t in feeds))
        conv = next(iter(convs)) if ok else None
        if ok and conv not in used_convs and _replacement(m) is not None:
            used_convs.add(conv)
            pairs.append((names[conv], names[m]))
        else:
            left.append(names[m])
    return pairs, left


def fuse_conv_bn(model: nn.Module, example: Tensor | list[Tensor], *, within: str | None = None) -> FusionReport:
    """Fold every BatchNorm fed by a conv alone into that conv, in place (see the module
    docstring). ``model`` should be in eval mode afterwards: fused BatchNorms are gone.

    Args:
        model: any ``nn.Module`` taking ``example``.
        example: an input (e.g. (1, 3, 64, 64) for a segmentor) to discover the pairs with.
        within: fuse only below this submodule name (e.g. ``"backbone"``); the other pairs are
            reported as unfused.

    Returns:
        A :class:`FusionReport`.
    """
    pairs, left = find_conv_bn_pairs(model, example)
    if within is not None:
        inside = [p for p in pairs if p[1].startswith(within + ".")]
        left += [bn for _, bn in pairs if not bn.startswith(within + ".")]
        pairs = inside
    for conv_name, bn_name in pairs:
        conv = model.get_submodule(conv_name)
        bn = model.get_submodule(bn_name)
        weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                            bn.eps, bn.weight, bn.bias)
        conv.weight = weight
        conv.bias = bias
        _set_submodule(model, bn_name, _replacement(bn))
    return FusionReport(fused=pairs, unfused=left)


class DeployedModel(nn.Module):
    """An inference-only wrapper: inputs to channels_last, forward under ``torch.inference_mode``
    and optional autocast. ``model`` is the (fused) module; ``fusion`` the :class:`FusionReport`.

    Outputs are inference tensors (no autograd); ``model(images)`` keeps the wrapped model's
    contract (e.g. logits (B, K, H, W) for a semantic segmentor)."""

    def __init__(self, model: nn.Module, *, channels_last: bool, dtype: torch.dtype | None,
                 fusion: FusionReport | None, compiled: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.channels_last = channels_last
        self.dtype = dtype
        self.fusion = fusion
        self._run = compiled if compiled is not None else model
        for attr in ("task", "num_classes", "name"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def train(self, mode: bool = True) -> DeployedModel:
        if mode:
            raise RuntimeError("a deployed model is inference-only (its BatchNorms are fused); "
                               "train the original model")
        return super().train(False)

    def forward(self, images: Tensor | list[Tensor]):
        with torch.inference_mode():
            if self.channels_last and isinstance(images, Tensor) and images.ndim == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            first = images if isinstance(images, Tensor) else images[0]
            ctx = (torch.autocast(first.device.type, dtype=self.dtype) if self.dtype is not None
                   else contextlib.nullcontext())
            with ctx:
                return self._run(images)


def optimize_for_inference(
    model: nn.Module,
    *,
    fuse_bn: bool = True,
    channels_last: bool = True,
    compile: bool | str = False,
    dtype: str | torch.dtype | None = None,
    example: Tensor | list[Tensor] | None = None,
    example_size: Sequence[int] | None = None,
    check: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-5,
    inplace: bool = False,
) -> DeployedModel:
    """An inference-only version of ``model``: conv+BN fused, channels_last, inference_mode.

    Args:
        model: a model of the zoo (or any module taking (B, 3, H, W) images).
        fuse_bn: fold BatchNorms into the preceding convs (eval statistics).
        channels_last: convert weights and inputs to channels_last (NHWC) memory format, which
            oneDNN (CPU) and cuDNN (tensor cores) run faster for most convolutions.
        compile: ``torch.compile`` the fused model (:mod:`segzoo.compiling`): ``True`` (or
            ``"default"``), a mode name (``"reduce-overhead"``: CUDA graphs, for launch-bound
            small batches; ``"max-autotune"``) or ``"backend:<name>"`` (e.g. ``"backend:eager"``
            to test the path). A detector has its backbone compiled only: its heads' shapes
            depend on the data (proposal counts, NMS).
        dtype: ``"bf16"``/``"fp16"`` (or a torch dtype) for autocast; ``None`` keeps float32.
        example: the input used to find the conv+BN pairs and check the result (a list of
            (3, H, W) images for instance models); default standard normal noise of
            ``example_size`` (default (1, 3, S, S), S = max(64, ``model.min_input_size``)) on the
            model's device.
        check: compare the fused model's output (a detector's backbone features:
            :func:`checked_output`) with the original's on ``example`` (float32,
            before channels_last/compile/autocast) and raise if they differ by more than
            ``atol + rtol * max|original output|`` (float32 rounding grows with the output's
            scale: randomly initialised deep ResNets in eval mode give outputs of 1e3 and more).
        inplace: modify ``model`` itself instead of a deep copy.

    Returns:
        A :class:`DeployedModel` in eval mode.

    Raises:
        ValueError: an unknown ``dtype`` or ``compile`` setting (before any work); fused outputs
            that differ from the original's.
    """
    compile_kwargs(compile)  # a misspelt mode fails here, not after the fusion and its check
    if isinstance(dtype, str) or dtype is None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(k for k in DTYPES if k)} or None, got {dtype!r}")
        dtype = DTYPES[dtype]
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    param = next(iter(target.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    if example is None:
        side = max(64, int(getattr(target, "min_input_size", 1)))
        size = tuple(example_size) if example_size is not None else (1, 3, side, side)
        example = torch.randn(size, generator=torch.Generator().manual_seed(0)).to(device)
    report = None
    if fuse_bn:
        reference = None
        if check:
            with torch.no_grad(), full_float32():
                reference = checked_output(target, example).float().clone()
        # a detector's check sees its backbone only, so only the backbone is fused (the
        # BatchNorms of a C4 box head or a normed mask head stay as they are)
        report = fuse_conv_bn(target, example, within="backbone" if is_detector(target) else None)
        if check:
            with torch.no_grad(), full_float32():
                out = checked_output(target, example).float()
            diff = (out - reference).abs().max().item()
            bound = atol + rtol * reference.abs().max().item()
            if not diff <= bound:
                raise ValueError(f"conv+BN fusion changed the output by {diff:.3g} (> {bound:.3g} "
                                 f"= atol + rtol * max|output|) on the example input; fused pairs: "
                                 f"{len(report.fused)}. Call with fuse_bn=False for this model")
    if channels_last:
        target = target.to(memory_format=torch.channels_last)
    compiled = None
    if compile:
        if is_detector(target):  # data-dependent heads (NMS, RoI sampling): the backbone alone
            target.backbone = compile_module(target.backbone, compile)
        else:
            compiled = compile_module(target, compile)
    return DeployedModel(target, channels_last=channels_last, dtype=dtype, fusion=report,
                         compiled=compiled).eval()


def is_detector(model: nn.Module) -> bool:
    """True for a model of torchvision's detection layout (``transform`` + ``backbone`` +
    heads, taking a list of images): segzoo's Mask R-CNN and Keypoint R-CNN, torchvision's."""
    return hasattr(model, "transform") and hasattr(model, "backbone") and hasattr(model, "roi_heads")


def checked_output(model: nn.Module, example: Tensor | list[Tensor]) -> Tensor:
    """The tensor the fusion check compares: the main output of a semantic model; for a
    detector, its backbone's features (every FPN level, flattened and concatenated) on the
    transformed ``example``. Detections themselves are no fair test: on random weights many
    boxes tie in score and float rounding reorders them, moving boxes by tens of pixels. Only
    the backbone's BatchNorms are fused in a detector, so these features cover every change."""
    if not is_detector(model):
        return main_output(model(example))
    images, _ = model.transform(list(example))
    feats = model.backbone(images.tensors)
    feats = (list(feats.values()) if isinstance(feats, dict)
             else list(feats) if isinstance(feats, (list, tuple)) else [feats])
    return torch.cat([f.flatten() for f in feats])


@contextlib.contextmanager
def full_float32():
    """TF32 off for CUDA convolutions and matmuls (their default on Ampere and later GPUs rounds
    inputs to 10 mantissa bits, ~1e-3 relative), so the fusion check compares float32 with
    float32, as on the CPU."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def main_output(out) -> Tensor:
    """The main output of a forward pass: a tensor, ``out["out"]`` of a dict (torchvision's
    segmentation models), or the first tensor of a sequence."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, dict):
        return out["out"] if "out" in out else next(v for v in out.values() if isinstance(v, Tensor))
    if isinstance(out, (list, tuple)):
        return main_output(out[0])
    raise TypeError(f"cannot compare outputs of type {type(out).__name__}")
