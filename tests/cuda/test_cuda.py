"""The CUDA paths of the zoo, run on a GPU by `make gpu-check` (benchmarks/gpu_check.sh).

Every test here is marked ``cuda`` and skips with "no CUDA device" on a machine without one (CI).
``SEGZOO_CUDA_TESTS_ON_CPU=1`` runs the bodies on the CPU with slim models instead, the parts that
need a GPU (fp16 with loss scaling, NCCL, GPU-vs-CPU equality) still skipped, so that this file's
own code is exercised without a GPU.

On the GPU the models are the registered defaults (VGG-16 FCNs, ResNet-50/101 DeepLabs, PSPNet,
U-Net, Mask R-CNN R50-FPN) at 64x64 (Mask R-CNN resizes to 96..128 px), 4 classes.
"""

from __future__ import annotations

import copy
import functools
import os
import warnings

import pytest
import torch
import torch.nn.functional as F

import segzoo
from segzoo.bench.timing import instance_targets
from segzoo.checkpoint import load_checkpoint, save_checkpoint
from segzoo.engine.accel import Precision
from segzoo.engine.reproducibility import Determinism, seed_everything
from segzoo.models.layers.aten_resize import keep_aten_resize
from segzoo.models.layers.depthwise_taps import depthwise_as_taps
from segzoo.registry import MODELS as MODEL_REGISTRY

HAS_CUDA = torch.cuda.is_available()
ON_CPU = not HAS_CUDA and os.environ.get("SEGZOO_CUDA_TESTS_ON_CPU") == "1"
DEV = torch.device("cuda" if HAS_CUDA else "cpu")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not (HAS_CUDA or ON_CPU), reason="no CUDA device")]
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device (this part needs a real GPU)")

NUM_CLASSES = 4
MODELS = segzoo.list_models()
# the GPU runs the registered defaults; the CPU stand-in run uses slim versions of each
SLIM = {
    "fcn32s": {"backbone": "resnet18", "fc_channels": 32, "fc_kernel_size": 1},
    "fcn16s": {"backbone": "resnet18", "fc_channels": 32, "fc_kernel_size": 1},
    "fcn8s": {"backbone": "resnet18", "fc_channels": 32, "fc_kernel_size": 1},
    "fcn": {"backbone": "resnet18", "channels": 32},
    "unet": {"base_channels": 8},
    "deeplabv2": {"backbone": "resnet18"},
    "deeplabv3": {"backbone": "resnet18", "channels": 32},
    "deeplabv3plus": {"backbone": "resnet18", "channels": 32, "low_level_channels": 16},
    "pspnet": {"backbone": "resnet18", "channels": 32, "ppm_channels": 16},
    "maskrcnn": {"backbone": "resnet18", "fpn_channels": 32, "box_head_dim": 64, "mask_head_dim": 16},
    "keypointrcnn": {"backbone": "resnet18", "fpn_channels": 32, "box_head_dim": 64,
                     "keypoint_head_dim": 16, "num_keypoints": 5},
}
MASKRCNN_SIZE = {"min_size": 96, "max_size": 128, "rpn_pre_nms_top_n_train": 500,
                 "rpn_post_nms_top_n_train": 200, "rpn_pre_nms_top_n_test": 300,
                 "rpn_post_nms_top_n_test": 100}


def is_instance(name: str) -> bool:
    return MODEL_REGISTRY.entry(name).meta.get("task") == "instance"


# models without a default architecture (composed from parts): one composition
REQUIRED = {"encoder_decoder": {"backbone": {"name": "mobilenet_v2", "output_stride": 16},
                                "decode_head": {"name": "psp_head", "channels": 32},
                                "auxiliary_head": {"name": "fcn_head", "in_index": -2}}}


def kwargs_for(name: str) -> dict:
    kw = dict(SLIM.get(name, {})) if not HAS_CUDA else {}
    return {**REQUIRED.get(name, {}), **kw, **(MASKRCNN_SIZE if is_instance(name) else {})}


@functools.cache
def _cpu_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return segzoo.build_model(name, num_classes=NUM_CLASSES, **kwargs_for(name))


def fresh(name: str) -> torch.nn.Module:
    """A copy of the model (same initial weights every call), in training mode, on the CPU."""
    return copy.deepcopy(_cpu_model(name)).train()


def without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Dropout off (p = 0): two runs that must agree would otherwise draw different masks."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.p = 0.0
    return model


def batch(name: str, device: torch.device, n: int = 2, size=(64, 64)) -> dict:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(n, 3, *size, generator=g)
    if is_instance(name):
        targets = instance_targets(images, NUM_CLASSES)
        k = getattr(_cpu_model(name), "num_keypoints", None)
        for t in targets if k else []:  # keypoints inside each box, all visible
            x1, y1, x2, y2 = t["boxes"].unbind(1)
            u = torch.rand(len(x1), k, 2, generator=g)
            t["keypoints"] = torch.stack([x1[:, None] + u[..., 0] * (x2 - x1)[:, None],
                                          y1[:, None] + u[..., 1] * (y2 - y1)[:, None],
                                          torch.full((len(x1), k), 2.0)], -1)
        return {"images": images.to(device), "targets": targets}
    labels = torch.randint(0, NUM_CLASSES, (n, *size), generator=g)
    return {"images": images.to(device), "labels": labels.to(device)}


def loss_of(model, b: dict) -> torch.Tensor:
    """The training loss: Mask R-CNN's loss dict summed, or the semantic models' weighted
    cross-entropy of every output (``model.loss_weights``)."""
    if getattr(model, "task", None) == "instance":
        targets = [{k: v.to(b["images"].device) for k, v in t.items()} for t in b["targets"]]
        return sum(model(list(b["images"]), targets).values())
    out = model(b["images"])  # autocast's fp16/bf16 logits are scored in float32, float64 stays
    return sum(w * F.cross_entropy(out[k].to(torch.promote_types(out[k].dtype, torch.float32)), b["labels"])
               for k, w in model.loss_weights.items())


def train(model, b: dict, amp: str | None, steps: int, *, until_stepped: bool = False) -> list[float]:
    """``steps`` SGD steps through the engine's :class:`Precision` (autocast, GradScaler);
    ``until_stepped``: go on (up to 12 steps) until fp16 loss scaling has applied an update."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    precision = Precision(amp, b["images"].device)
    losses = []
    for i in range(12 if until_stepped else steps):
        opt.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = loss_of(model, b)
        losses.append(loss.item())
        scale = precision.scale
        precision.backward(loss)
        precision.step(opt)
        stepped = scale is None or precision.scale >= scale  # the scale halves on a skipped step
        if i + 1 >= steps and (not until_stepped or stepped):
            break
    return losses


def changed_fraction(before: dict, model) -> float:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    changed = sum(not torch.equal(before[n], p.detach().cpu()) for n, p in params)
    return changed / len(params)


MODES = ["fp32", "bf16", "fp16", "channels_last"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", MODELS)
def test_train_step_every_model(name, mode, request):
    """Forward + backward + optimizer step on the device: finite losses, parameters updated."""
    if mode == "fp16" and not HAS_CUDA:
        pytest.skip("fp16 autocast with GradScaler needs CUDA")
    model = fresh(name)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model = model.to(DEV)
    b = batch(name, DEV)
    if mode == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        b["images"] = b["images"].contiguous(memory_format=torch.channels_last)
    amp = mode if mode in ("bf16", "fp16") else None
    losses = train(model, b, amp, 2, until_stepped=mode == "fp16")
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    frac = changed_fraction(before, model)
    assert frac >= 0.95, f"{name} {mode}: only {frac:.0%} of the parameter tensors changed"
    if mode == "channels_last" and not is_instance(name):
        model.eval()
        with torch.no_grad():
            out_cl = model(b["images"])
            out = model(b["images"].contiguous())
        assert out_cl.shape == (2, NUM_CLASSES, 64, 64)
        assert (out_cl - out).abs().max() <= 1e-3 * out.abs().max() + 1e-5


# fp32, TF32 off: |GPU - CPU| <= RTOL * max|CPU output| + ATOL (random-init deep networks in eval
# mode have outputs of 1e2..1e4, and cuDNN and oneDNN sum in different orders)
RTOL, ATOL = 1e-4, 1e-5


@needs_gpu
@pytest.mark.parametrize("name", MODELS)
def test_gpu_output_equals_cpu_output(name, no_tf32):
    from segzoo.bench.peers import randomise_bn

    model = fresh(name)
    randomise_bn(model)
    model.eval()
    b = batch(name, torch.device("cpu"), size=(64, 80))
    gpu = copy.deepcopy(model).to(DEV)
    with torch.no_grad():
        if is_instance(name):  # the backbone and FPN features, then the detections' scores
            x_cpu, _ = model.transform(list(b["images"]))
            x_gpu, _ = gpu.transform(list(b["images"].to(DEV)))
            f_cpu, f_gpu = model.backbone(x_cpu.tensors), gpu.backbone(x_gpu.tensors)
            pairs = list(zip(f_cpu, f_gpu)) + list(zip(model.neck(f_cpu).values(), gpu.neck(f_gpu).values()))
            assert len(pairs) >= 8
            for k, (ref, out) in enumerate(pairs):
                diff = (out.cpu() - ref).abs().max().item()
                assert diff <= RTOL * ref.abs().max().item() + ATOL, (k, diff)
            det_cpu, det_gpu = model(list(b["images"])), gpu(list(b["images"].to(DEV)))
            for a, g in zip(det_cpu, det_gpu):
                n = min(len(a["scores"]), len(g["scores"]))
                assert abs(len(a["scores"]) - len(g["scores"])) <= 2
                assert (a["scores"][:n] - g["scores"][:n].cpu()).abs().max() <= 5e-3
            return
        ref = model(b["images"])
        out = gpu(b["images"].to(DEV)).cpu()
    diff = (out - ref).abs().max().item()
    assert diff <= RTOL * ref.abs().max().item() + ATOL, f"{name}: max |GPU - CPU| {diff:.3g} of {ref.abs().max():.3g}"
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.999


def _deterministic_run(name: str) -> tuple[dict, list[str]]:
    with warnings.catch_warnings(record=True) as caught, Determinism(True):
        warnings.simplefilter("always")
        seed_everything(0)  # as the engine does: the same dropout masks in both runs
        model = fresh(name).to(DEV)
        train(model, batch(name, DEV), None, 3)
    nondet = sorted({str(w.message).split(" does not have a deterministic")[0] for w in caught
                     if "deterministic" in str(w.message)})
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, nondet


def test_deterministic_mode_unet_bit_identical():
    """U-Net (transposed-conv upsampling, no interpolation): two runs in deterministic mode give
    bit-identical weights. (On CUDA, torch still warns that the cross-entropy's
    ``nll_loss2d_forward`` has no deterministic kernel; the weights must agree regardless.)"""
    a, nondet = _deterministic_run("unet")
    b, _ = _deterministic_run("unet")
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ; ops without a deterministic kernel: {nondet}"


@pytest.mark.xfail(HAS_CUDA, strict=False,
                   reason="bilinear upsampling's and adaptive pooling's CUDA backward add with atomics "
                          "(torch warns under train.deterministic's warn_only); may differ in the last bits")
def test_deterministic_mode_deeplabv3plus_bit_identical():
    a, nondet = _deterministic_run("deeplabv3plus")
    b, _ = _deterministic_run("deeplabv3plus")
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ; ops without a deterministic kernel: {nondet}"


@pytest.fixture
def no_tf32():
    """float32 comparisons in float32: TF32 (torch's default for CUDA convolutions) rounds to
    ~1e-3 relative, which BatchNorm on a 2-image batch amplifies in the gradients."""
    from segzoo.export.deploy import full_float32

    with full_float32():
        yield


def test_sync_batchnorm_in_a_one_process_group(tmp_path, no_tf32):
    """convert_sync_batchnorm in a 1-process group (NCCL on the GPU; gloo in the CPU stand-in,
    where SyncBatchNorm is checked only as far as PyTorch runs it): same loss, gradients and running
    statistics as BatchNorm. Synchronisation across several GPUs needs several GPUs."""
    import torch.distributed as dist

    # dropout off: two draws differed by 2.9e-4 of the loss in the H200 run of 2026-11-27
    model = without_dropout(fresh("deeplabv3plus")).to(DEV)
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
    n_sync = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    assert n_sync == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0
    dist.init_process_group("nccl" if HAS_CUDA else "gloo", init_method=f"file://{tmp_path}/pg",
                            rank=0, world_size=1)
    try:
        b = batch("deeplabv3plus", DEV)
        try:
            loss_s = loss_of(synced, b)
        except ValueError as exc:  # SyncBatchNorm is CUDA-only in some PyTorch versions
            assert not HAS_CUDA, exc
            pytest.skip(f"SyncBatchNorm on CPU: {exc}")
        loss_b = loss_of(model, b)
        loss_s.backward()
        loss_b.backward()
    finally:
        dist.destroy_process_group()
    assert abs(loss_s.item() - loss_b.item()) <= 1e-5 * abs(loss_b.item())
    for (n, p), q in zip(synced.named_parameters(), model.parameters()):
        assert (p.grad - q.grad).abs().max() <= 1e-3 * q.grad.abs().max() + 1e-7, n
    bn_s = [m for m in synced.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    bn_b = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for s, m in zip(bn_s, bn_b):
        assert torch.allclose(s.running_var, m.running_var, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("src,dst", [("cuda", "cpu"), ("cpu", "cuda")])
def test_checkpoint_moves_between_gpu_and_cpu(tmp_path, src, dst):
    """Weights and optimizer state saved on one device load bit for bit on the other, and the
    next step there matches the next step on the saving device."""
    src_dev = DEV if src == "cuda" else torch.device("cpu")
    dst_dev = DEV if dst == "cuda" else torch.device("cpu")
    model = fresh("deeplabv3plus").to(src_dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    b_src = batch("deeplabv3plus", src_dev)
    for _ in range(2):
        opt.zero_grad()
        loss_of(model, b_src).backward()
        opt.step()
    path = save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": 2},
                           tmp_path / "ck" / "last.pt")
    state = load_checkpoint(path, map_location=dst_dev)
    moved = fresh("deeplabv3plus").to(dst_dev)
    moved.load_state_dict(state["model"])
    opt2 = torch.optim.SGD(moved.parameters(), lr=0.01, momentum=0.9)
    opt2.load_state_dict(state["optimizer"])
    for k, v in moved.state_dict().items():
        assert v.device.type == dst_dev.type and torch.equal(v.cpu(), model.state_dict()[k].cpu()), k
    model.eval()
    moved.eval()  # one more step each, eval-mode BN (batch statistics of 2 images are noisy)
    for m, o, d in ((model, opt, src_dev), (moved, opt2, dst_dev)):
        b = batch("deeplabv3plus", d)
        o.zero_grad()
        F.cross_entropy(m(b["images"]), b["labels"]).backward()
        o.step()
    for (n, p), q in zip(model.named_parameters(), moved.parameters()):
        assert (p.detach().cpu() - q.detach().cpu()).abs().max() <= 1e-3 * p.detach().abs().max().cpu() + 1e-6, n


def _compile(module):
    # the CPU stand-in checks the code path with a cheap backend; the GPU uses inductor
    return torch.compile(module) if HAS_CUDA else torch.compile(module, backend="aot_eager")


def _compiled_and_eager_grads(model, b):
    """Loss and flattened gradients of ``model`` compiled and of an eager deep copy, same batch."""
    twin = copy.deepcopy(model)
    loss_c, loss_e = loss_of(_compile(model), b), loss_of(twin, b)
    loss_c.backward()
    loss_e.backward()
    flat = lambda m: torch.cat([p.grad.flatten() for p in m.parameters()])  # noqa: E731
    return loss_c.detach(), loss_e.detach(), flat(model), flat(twin)


def _small_deeplabv3plus() -> tuple[torch.nn.Module, dict]:
    """DeepLab v3+ R18 for the compile tests (narrower heads on the CPU stand-in), built under
    seed 0 with dropout off (compiled and eager dropout draw different masks), on DEV, and a batch."""
    torch.manual_seed(0)
    kwargs = {} if HAS_CUDA else {"channels": 32, "low_level_channels": 16}
    model = segzoo.build_model("deeplabv3plus", num_classes=NUM_CLASSES, backbone="resnet18", **kwargs)
    return without_dropout(model).to(DEV), batch("deeplabv3plus", DEV)


def _in_float64(model: torch.nn.Module, b: dict) -> tuple[torch.nn.Module, dict]:
    """A float64 copy of ``model`` (take it before training ``model``: its gradients are copied
    too) and ``b`` with float64 images."""
    return copy.deepcopy(model).double(), {**b, "images": b["images"].double()}


def _assert_equal_in_float64(loss_c, loss_e, gc, ge) -> None:
    """Compiled against eager in float64: losses to 1e-9, gradients to 1e-6 (norm) and 1e-5
    (largest entry) relative; a wrong or missing gradient term is far outside."""
    assert abs(loss_c.item() - loss_e.item()) <= 1e-9 * abs(loss_e.item())
    assert (gc - ge).norm() <= 1e-6 * ge.norm()
    assert (gc - ge).abs().max() <= 1e-5 * ge.abs().max()


def test_torch_compile_semantic_model_trains_like_eager(no_tf32):
    """DeepLab v3+ under torch.compile (inductor on the GPU) gives eager's loss and gradients.

    This randomly initialised net on random labels is ill-conditioned: in float64 a 1e-7
    relative change of the input moves its gradient by 0.8% (measured on the CPU, 2026-11-27),
    so any two float32 implementations may differ by about 1% (inductor against eager: 1.6% in
    H200 run 5; eager float32 against float64 on the CPU: 0.7%). The gradients are therefore
    checked tightly in float64, where rounding is 1e-9 times smaller, and loosely in float32."""
    model, b = _small_deeplabv3plus()
    model64, b64 = _in_float64(model, b)
    loss_c, loss_e, gc, ge = _compiled_and_eager_grads(model, b)
    assert torch.isfinite(loss_c) and abs(loss_c.item() - loss_e.item()) <= 1e-3 * abs(loss_e.item())
    assert torch.isfinite(gc).all() and (gc - ge).norm() <= 5e-2 * ge.norm()
    _assert_equal_in_float64(*_compiled_and_eager_grads(model64, b64))


def test_torch_compile_with_levers_trains_like_eager(no_tf32):
    """The same in float64 with gpu_train.py's ``--compile-levers`` on: ATen's bilinear resize
    kept as opaque operators (``keep_aten_resize``; the compiled step must call them) and the
    depthwise convolutions as multiply-adds (``depthwise_as_taps``); the loss and gradients
    are eager's."""
    model, b = _in_float64(*_small_deeplabv3plus())
    with keep_aten_resize(), depthwise_as_taps(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        loss_c, loss_e, gc, ge = _compiled_and_eager_grads(model, b)
    called = {e.key for e in prof.key_averages()}
    assert {"segzoo::bilinear_resize", "segzoo::bilinear_resize_backward"} <= called
    _assert_equal_in_float64(loss_c, loss_e, gc, ge)


def test_torch_compile_maskrcnn_backbone(no_tf32):
    model = fresh("maskrcnn").eval().to(DEV)
    # the detector resizes a 128x128 image to 96x96 (MASKRCNN_SIZE): the backbone is compiled for
    # that shape once (a second shape would recompile it with dynamic shapes: 20 s on the GPU)
    images = torch.rand(1, 3, 96, 96, device=DEV)
    compiled = _compile(model.backbone)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with torch.no_grad():
        ref, out = model.backbone(images), compiled(images)
        model.backbone = compiled  # the whole detector runs with the compiled backbone
        dets = model([torch.rand(3, 128, 128, device=DEV)])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # not recompiled
    ref, out = (list(x.values()) if isinstance(x, dict) else list(x) for x in (ref, out))
    assert len(ref) == len(out) >= 4  # the multi-scale features the FPN takes
    for k, (r, o) in enumerate(zip(ref, out)):
        assert o.shape == r.shape and (o - r).abs().max() <= 1e-3 * r.abs().max() + 1e-5, k
    assert dets[0]["masks"].shape[1:] == (1, 128, 128)


@needs_gpu
def test_batched_mask_paste_on_the_gpu_equals_torchvision_loop(monkeypatch):
    """segzoo's batched mask paste (Mask R-CNN's default on a GPU) against torchvision's per-mask
    loop on the GPU and against itself on the CPU; the detector on the GPU uses it."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from segzoo.models.detectors import transform
    from segzoo.models.detectors.paste import paste_masks

    g = torch.Generator().manual_seed(0)
    masks = torch.rand(50, 1, 28, 28, generator=g)
    xy = torch.rand(50, 2, generator=g) * torch.tensor([180.0, 110.0])
    boxes = torch.cat([xy, xy + torch.rand(50, 2, generator=g) * 60 + 1], 1)
    boxes[:, 0::2], boxes[:, 1::2] = boxes[:, 0::2].clamp(0, 200), boxes[:, 1::2].clamp(0, 120)
    ref = paste_masks_in_image(masks.to(DEV), boxes.to(DEV), (120, 200))
    out = paste_masks(masks.to(DEV), boxes.to(DEV), (120, 200))
    assert (out - ref).abs().max() <= 1e-5 and torch.equal(out == 0, ref == 0)
    assert (out.cpu() - paste_masks(masks, boxes, (120, 200))).abs().max() <= 1e-5

    calls = []
    monkeypatch.setattr(transform, "paste_masks", lambda *a, **k: calls.append(1) or paste_masks(*a, **k))
    model = fresh("maskrcnn").eval().to(DEV)
    model.roi_heads.score_thresh = 0.0
    with torch.no_grad():
        (det,) = model([torch.rand(3, 128, 128, device=DEV)])
    assert calls and det["masks"].shape[1:] == (1, 128, 128) and det["masks"].is_cuda
