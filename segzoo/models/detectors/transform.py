"""Input normalisation, resizing and batching of Mask R-CNN: torchvision's
:class:`~torchvision.models.detection.transform.GeneralizedRCNNTransform`, with the ground-truth
masks resized in chunks.

torchvision resizes every target mask of an image at once as float32 (4 bytes per pixel per
instance: 2 GB for 500 instances at 800 x 1333). Here masks are resized ``chunk`` at a time (same
nearest-neighbour result, bit for bit) and not at all when the image keeps its size, so the
memory of an image's masks stays one byte per pixel per instance.

When traced for ONNX export (:mod:`segzoo.export.detection`), the eval resize computes its output
size as eager PyTorch does, floor(side x scale) in float64, as tensor operations of the input's
size, and resizes to that size (torchvision's traced path multiplies in float32, which gives a row
fewer at some sizes, e.g. 97 x (64 / 97) = 63.99..., and resamples with the unrounded scale).
Eager PyTorch runs torchvision's code unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from segzoo.models.detectors.paste import paste_masks

PASTE_MODES = ("auto", "batched", "loop")


class RCNNTransform(GeneralizedRCNNTransform):
    """``GeneralizedRCNNTransform(min_size, max_size, image_mean, image_std)`` (see its docs):
    images (3, H, W) float in 0..1 are normalised by ``image_mean``/``image_std``, resized so the
    shorter side is ``min_size`` (a random one of a list in training) and the longer at most
    ``max_size``, and padded into a batch divisible by 32; targets' boxes and masks follow.
    ``keep_size=True``: no resize at all (the data pipeline sized the images; ``min_size`` and
    ``max_size`` are ignored), as for small objects at a fixed scale such as nuclei.
    ``mask_paste``: how predicted masks are pasted into the image (:meth:`postprocess`).

    Raises:
        ValueError: ``mask_paste`` not one of ``"auto"``, ``"batched"``, ``"loop"``, at
            construction or when assigned later.
    """

    def __init__(self, *args, mask_chunk: int = 32, keep_size: bool = False, mask_paste: str = "auto",
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mask_chunk = mask_chunk
        self.keep_size = keep_size
        self.mask_paste = mask_paste

    @property
    def mask_paste(self) -> str:
        return self._mask_paste

    @mask_paste.setter
    def mask_paste(self, mode: str) -> None:
        if mode not in PASTE_MODES:
            raise ValueError(f"mask_paste must be one of {PASTE_MODES}, got {mode!r}")
        self._mask_paste = mode

    def postprocess(self, result: list[dict[str, Tensor]], image_shapes: list[tuple[int, int]],
                    original_image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """torchvision's postprocess (boxes and keypoints scaled back to the original image sizes,
        (N, 1, M, M) RoI masks pasted into (N, 1, H, W) images), with the masks pasted all at
        once by :func:`~segzoo.models.detectors.paste.paste_masks` where ``mask_paste`` says so:
        ``"batched"``, or ``"auto"`` on a GPU (torchvision's per-mask loop synchronises with the
        GPU a dozen times per detection); ``"loop"``, ``"auto"`` on the CPU and the ONNX tracer
        keep torchvision's loop. Both agree to float rounding (1e-5)."""
        if self.training or self.mask_paste == "loop" or torchvision._is_tracing():
            return super().postprocess(result, image_shapes, original_image_sizes)
        masks = [r.get("masks") for r in result]
        if not any(m is not None and (self.mask_paste == "batched" or m.is_cuda) for m in masks):
            return super().postprocess(result, image_shapes, original_image_sizes)
        for r in result:
            r.pop("masks", None)
        result = super().postprocess(result, image_shapes, original_image_sizes)
        for r, m, size in zip(result, masks, original_image_sizes):
            if m is not None:
                r["masks"] = paste_masks(m, r["boxes"], (int(size[0]), int(size[1])))
        return result

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None) -> tuple[Tensor, dict | None]:
        if self.keep_size:
            return image, target
        if target is None and not self.training and self.fixed_size is None and torchvision._is_tracing():
            return traced_resize(image, self.min_size[-1], self.max_size), None
        masks = None
        if target is not None and "masks" in target:
            target = dict(target)
            masks = target.pop("masks")
        image, target = super().resize(image, target)
        if masks is not None:
            size = tuple(image.shape[-2:])
            if tuple(masks.shape[-2:]) != size:
                parts = [F.interpolate(masks[i:i + self.mask_chunk, None].float(), size=size)[:, 0].byte()
                         for i in range(0, masks.shape[0], self.mask_chunk)]
                masks = torch.cat(parts) if parts else masks.new_zeros((0, *size), dtype=torch.uint8)
            target["masks"] = masks
        return image, target


def traced_resize(image: Tensor, min_size: int, max_size: int) -> Tensor:
    """Eval resize of one (3, H, W) image with the sizes as tensors (for the ONNX tracer): the
    shorter side to ``min_size``, the longer at most ``max_size``, output sides floor(side x scale)
    computed in float64 exactly as eager torchvision + ``F.interpolate(recompute_scale_factor=True)``
    do in Python floats, then bilinear (``align_corners=False``) to that size."""
    hw = torch._shape_as_tensor(image)[-2:].to(torch.float64)
    # 1-element float64 tensors, not numbers or 0-dim tensors: the ONNX exporter computes those in float32
    limits = hw.new_tensor([float(min_size), float(max_size)])
    scale = (limits / torch.stack([hw.amin(0), hw.amax(0)])).amin(0, keepdim=True)
    size = torch.floor(hw * scale).to(torch.int64)
    return F.interpolate(image[None], size=(size[0], size[1]), mode="bilinear", align_corners=False)[0]
