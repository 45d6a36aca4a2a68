"""Post-training static int8 quantization of semantic models for x86 CPUs (``segzoo quantize``).

The flow is PyTorch's PT2E quantization for x86 (the quantizer and passes live in ``torchao``
since they left ``torch.ao``; needs the ``quantize`` extra: ``pip install 'segzoo[quantize]'``):

1. ``torch.export.export`` traces the eval-mode model with symbolic N, H, W (as ONNX export does:
   one graph for every input size);
2. ``prepare_pt2e`` with the ``X86InductorQuantizer`` (its default config: int8 weights,
   symmetric, one scale per output channel; uint8 activations, one scale and zero point per
   tensor, min/max observers) inserts observers, folding each BatchNorm into its conv;
3. calibration: N images of the config's *train* split through its *val* pipeline (resize,
   normalisation: what the model sees at inference) run through the observed model;
4. ``convert_pt2e`` replaces the observers with quantize/dequantize pairs and stores the weights
   as int8 (the "reference" representation: in eager mode it computes in float32 what int8 kernels
   would, only slower);
5. the converted graph is exported again and saved with ``torch.export.save`` (``.pt2``).

Modules named in ``keep_float`` stay float32 (``segzoo quantize --float-classifiers``: the
class-score convs, :func:`classifier_convs`). On CPUs without VNNI the activations use 7 bits
(``reduce_range``, see :func:`x86_quantizer`).

Running it fast is ``torch.compile`` with inductor's ``freezing``: inductor pattern-matches the
dequantize -> conv -> quantize chains into oneDNN int8 convolutions (VNNI) on prepacked weights
(:class:`Int8Model`, ``compile=True``). Uncompiled, the same program runs the reference float
computation (tests, debugging).

What ``model_int8.pt2`` holds: the exported program (graph, int8 weights with their per-channel
scales, float32 biases, the activations' scales and zero points) and ``segzoo.json`` (extra file:
format, model name, class names, palette, mean/std, ``min_input_size``, the calibration images
used). Input and output are as for the ONNX export: ``images`` (N, 3, H, W) float32 normalised
with ``mean``/``std`` -> logits (N, K, H, W) float32.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from segzoo.errors import ConfigError, ExportError
from segzoo.export.onnx import trace_dynamic

FORMAT = "segzoo-int8-pt2e/1"
META_FILE = "segzoo.json"


def _torchao():
    """(prepare_pt2e, convert_pt2e, quantizer module) from torchao; ExportError if missing."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
    except ImportError:
        raise ExportError("int8 quantization needs torchao: pip install 'segzoo[quantize]'") from None
    return prepare_pt2e, convert_pt2e, xiq


def cpu_has_vnni() -> bool:
    """Whether this CPU has an int8 dot-product instruction (AVX-512 VNNI, AVX-VNNI or AMX;
    torch's capability check, else ``/proc/cpuinfo`` flags)."""
    try:
        if torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported():
            return True
    except AttributeError:  # older or newer torch without these helpers
        pass
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def x86_quantizer(keep_float: Sequence[str] = (), reduce_range: bool | None = None):
    """The ``X86InductorQuantizer`` with its default static config (see the module docstring);
    the modules named in ``keep_float`` (and their children, e.g. ``decode_head.score_fr``) are
    left in float32 (``set_module_name_qconfig(name, None)``).

    ``reduce_range``: activations in 0..127 instead of 0..255 (torchao's advice for CPUs without
    VNNI, whose AVX2 int8 kernels add pairs of u8 x s8 products in saturating int16: full-range
    activations overflow there). ``None``: on when :func:`cpu_has_vnni` is false. It is fixed at
    quantization time: quantize on (or for) the CPU the model will run on."""
    _, _, xiq = _torchao()
    if reduce_range is None:
        reduce_range = not cpu_has_vnni()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config(reduce_range=bool(reduce_range)))
    for name in keep_float:
        quantizer.set_module_name_qconfig(name, None)
    return quantizer


def _one_partition_per_call(graph: torch.fx.Graph) -> None:
    """Give every call of a module its own name in the nodes' ``nn_module_stack``.

    The quantizer groups the nodes of a non-strict export into "partitions" by the module that
    made them; a module instance called twice (one ``nn.ReLU`` after fc6 and after fc7 in FCN's
    head) would make one partition with two outputs, which ``X86InductorQuantizer`` rejects. Nodes
    of one module that are not connected to each other are separate calls: each group of connected
    nodes after the first gets ``@k`` appended to the module's name (metadata only)."""
    groups: dict[str, list[torch.fx.Node]] = {}
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if node.op == "call_function" and stack:
            groups.setdefault(list(stack.values())[-1][0], []).append(node)
    for nodes in groups.values():
        if len(nodes) < 2:
            continue
        root = {n: n for n in nodes}
        for n in nodes:
            for arg in n.all_input_nodes:
                if arg in root:
                    root[_find(root, n)] = _find(root, arg)
        calls: dict[torch.fx.Node, int] = {}
        for n in nodes:
            k = calls.setdefault(_find(root, n), len(calls))
            if k:
                stack = dict(n.meta["nn_module_stack"])
                key, (name, cls) = list(stack.items())[-1]
                stack[key] = (f"{name}@{k}", cls)
                n.meta["nn_module_stack"] = stack


def _find(root: dict, n):
    """Union-find root of ``n``."""
    while root[n] is not n:
        n = root[n]
    return n


def _drop_unused_attributes(gm: torch.fx.GraphModule) -> None:
    """Delete the parameters and buffers no graph node reads (convert_pt2e leaves the float32
    weights next to their int8 copies); the saved file then holds the int8 weights only."""
    gm.graph.eliminate_dead_code()
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    names = [n for n, _ in gm.named_parameters(remove_duplicate=False)]
    names += [n for n, _ in gm.named_buffers(remove_duplicate=False)]
    for name in names:
        if name not in used:
            parent, _, attr = name.rpartition(".")
            owner = gm.get_submodule(parent) if parent else gm
            if hasattr(owner, attr):
                delattr(owner, attr)
    gm.recompile()


def classifier_convs(model: nn.Module) -> list[str]:
    """Names of the convolutions that output class scores (``out_channels == model.num_classes``:
    FCN's ``score_fr``/``score_pool4``/``score_pool3``, a decode head's ``conv_seg``, auxiliary
    heads included): ``segzoo quantize --float-classifiers`` keeps them in float32, a negligible
    share of the compute whose int8 rounding lands directly on the logits."""
    k = getattr(model, "num_classes", None)
    return [n for n, m in model.named_modules()
            if k and isinstance(m, nn.Conv2d) and m.out_channels == k]


def quantize_int8(model: nn.Module, calibration: Iterable[Tensor], *, example: Tensor | None = None,
                  keep_float: Sequence[str] = (),
                  reduce_range: bool | None = None) -> torch.export.ExportedProgram:
    """Post-training static int8 quantization (PT2E, x86 inductor quantizer; module docstring).

    Args:
        model: semantic model (``model.task`` "semantic"), float32 on the CPU; left unchanged.
        calibration: batches (B, 3, H, W) float32, normalised as in training (any B, H, W the
            model accepts); every one is run through the observed model.
        example: the input the graph is traced with (default: the first calibration batch).
        keep_float: names of modules (``model.named_modules()``) left in float32, e.g. the
            classifier convs where int8 costs accuracy and saves little time.
        reduce_range: 7-bit activations (see :func:`x86_quantizer`; ``None``: where this CPU
            has no VNNI).

    Returns:
        The quantized ``torch.export.ExportedProgram``: (N, 3, H, W) float32 -> (N, K, H, W)
        float32 logits, N, H, W dynamic (H, W >= ``model.min_input_size``).

    Raises:
        ExportError: an instance model, no calibration batch, torchao missing, a ``keep_float``
            name that is not a module of ``model``, or the model cannot be traced with dynamic sizes.
    """
    if getattr(model, "task", "semantic") != "semantic":
        raise ExportError(f"only semantic models are quantized; {type(model).__name__} is an "
                          f"{model.task} model (Mask R-CNN: see docs/deployment.md)")
    prepare_pt2e, convert_pt2e, _ = _torchao()
    model = model.eval()
    modules = dict(model.named_modules())
    unknown = [n for n in keep_float if n not in modules or not n]
    if unknown:
        raise ExportError(f"keep_float: {unknown} are not modules of {type(model).__name__} "
                          f"(names as in model.named_modules(), e.g. {list(modules)[1:4]})")
    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise ExportError("no calibration images: give at least one (--calib N)")
    example = first if example is None else example
    min_size = int(getattr(model, "min_input_size", 0) or 0)
    graph = trace_dynamic(model, example, min_size)[0].module()
    _one_partition_per_call(graph.graph)
    prepared = prepare_pt2e(graph, x86_quantizer(keep_float, reduce_range))
    with torch.no_grad():
        prepared(first)
        for batch in batches:
            prepared(batch)
    converted = convert_pt2e(prepared)
    _drop_unused_attributes(converted)
    return trace_dynamic(converted, example, min_size)[0]


def calibration_images(cfg, n: int, *, seed: int = 0) -> list[Tensor]:
    """``n`` images of the config's train split through its val transforms (the resize and
    normalisation of inference, no augmentation), each (1, 3, H, W) float32; picked with a fixed
    random permutation (``seed``) so the classes of a sorted dataset are mixed.

    Raises:
        ConfigError: ``n`` < 1, no ``data.train`` split, or fewer than ``n`` training images.
    """
    from segzoo.data import build_dataset, build_pipeline

    if n < 1:
        raise ConfigError(f"--calib must be at least 1, got {n}")
    data = cfg.data
    if data.train is None:
        raise ConfigError("the config has no data.train split to calibrate on")
    split = data.train.dataset
    dataset = build_dataset(split.name, ignore_index=data.ignore_index, **split.kwargs)
    dataset.transforms = build_pipeline(data.val.transforms if data.val is not None else [],
                                        ignore_index=data.ignore_index, mean=data.mean, std=data.std)
    if len(dataset) < n:
        raise ConfigError(f"--calib {n}: the train split ({split.name}) has only {len(dataset)} images")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
    return [dataset[int(i)]["image"].as_subclass(Tensor)[None].float() for i in order]


def save_int8(program: torch.export.ExportedProgram, path: str | os.PathLike, meta: dict) -> Path:
    """Write ``program`` with ``torch.export.save`` and ``meta`` (JSON-serialisable) as the
    ``segzoo.json`` extra file (``format`` added); parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path), extra_files={META_FILE: json.dumps({**meta, "format": FORMAT})})
    return path


def load_int8(path: str | os.PathLike) -> tuple[torch.export.ExportedProgram, dict]:
    """(program, meta) of a file written by :func:`save_int8`.

    Raises:
        ExportError: the file is missing, is not a segzoo int8 ``.pt2``, or torchao is missing
            (its quantize/dequantize operators must be registered to read the graph).
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"int8 model {path} does not exist (write one with segzoo quantize)")
    _torchao()  # registers the quantized_decomposed operators the graph uses
    extra = {META_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:
        raise ExportError(f"{path} is not a readable torch.export file: {exc}") from exc
    meta = json.loads(extra[META_FILE]) if extra[META_FILE] else {}
    if meta.get("format") != FORMAT:
        raise ExportError(f"{path} is not a segzoo int8 model ({META_FILE} format "
                          f"{meta.get('format')!r}, expected {FORMAT!r}); write it with segzoo quantize")
    return program, meta


class Int8Model(nn.Module):
    """A quantized program as an eval-mode semantic model (deploy mode): ``images``
    (N, 3, H, W) float tensor -> logits (N, K, H, W) float32, computed under ``torch.no_grad``.

    Args:
        program: from :func:`quantize_int8` or :func:`load_int8`.
        meta: the file's metadata (``min_input_size``, class names, ...).
        compile: run through ``torch.compile`` with inductor ``freezing`` (oneDNN int8 kernels;
            the first call at each input size compiles, tens of seconds); ``False`` runs the
            reference float computation of the quantized graph (same values up to rounding).
        dynamic: ``torch.compile``'s ``dynamic`` (``False``: one specialised graph per input size,
            the fastest kernels; up to torch's recompile limit of sizes).
    """

    task = "semantic"

    def __init__(self, program: torch.export.ExportedProgram, meta: dict | None = None, *,
                 compile: bool = True, dynamic: bool | None = False) -> None:
        super().__init__()
        self.module_ = program.module()
        self.meta = dict(meta or {})
        self.min_input_size = int(self.meta.get("min_input_size", 0) or 0)
        if "num_classes" in self.meta:
            self.num_classes = int(self.meta["num_classes"])
        self._run = torch.compile(self.module_, dynamic=dynamic) if compile else self.module_
        self.compiled = compile
        self.eval()

    def train(self, mode: bool = True) -> Int8Model:
        if mode:
            raise ExportError("an int8 model runs in eval mode only; train the float model")
        self.training = False  # the exported module has no train/eval switch (it is in eval mode)
        return self

    def forward(self, images: Tensor) -> Tensor:
        with torch.no_grad(), inductor_freezing(self.compiled):
            return self._run(images.float())


@contextlib.contextmanager
def inductor_freezing(enabled: bool = True):
    """Inductor's ``freezing`` on while compiling (weights become constants: the int8 weights
    are prepacked for oneDNN once). ``torch.compile(options={"freezing": True})`` does not
    reach the step that decides it in torch 2.14 (the graph keeps ``qconv_prepack`` calls that
    inductor cannot trace), hence the global setting, restored afterwards."""
    if not enabled:
        yield
        return
    import torch._inductor.config as inductor_config

    with inductor_config.patch(freezing=True):
        yield


def min_input_size(program: torch.export.ExportedProgram) -> int:
    """The smallest H (and W) ``program``'s image input accepts (its symbolic range's lower
    bound; the size itself where it is static)."""
    name = program.graph_signature.user_inputs[0]
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    lows = []
    for side in node.meta["val"].shape[2:]:
        if isinstance(side, torch.SymInt):
            lows.append(int(program.range_constraints[side.node.expr].lower))
        else:
            lows.append(int(side))
    return max(lows)


def int8_metadata(cfg, meta: dict, program: torch.export.ExportedProgram,
                  calibration: Sequence[Tensor], keep_float: Sequence[str] = (),
                  reduce_range: bool | None = None) -> dict:
    """The ``segzoo.json`` of :func:`save_int8` for a model built from ``cfg`` with the
    checkpoint ``meta`` of :func:`segzoo.checkpoint.load_trained_model`."""
    sizes = sorted({tuple(int(s) for s in b.shape[-2:]) for b in calibration})
    return {"model": cfg.model.name, "num_classes": int(meta["num_classes"]),
            "class_names": list(meta["class_names"]),
            "palette": [list(map(int, c)) for c in meta["palette"]],
            "mean": list(map(float, cfg.data.mean)), "std": list(map(float, cfg.data.std)),
            "min_input_size": min_input_size(program),
            "calibration": {"images": int(sum(b.shape[0] for b in calibration)),
                            "sizes": [list(s) for s in sizes], "split": "train",
                            "transforms": "val"},
            "keep_float": list(keep_float),
            "reduce_range": (not cpu_has_vnni()) if reduce_range is None else bool(reduce_range)}
