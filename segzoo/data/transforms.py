"""Joint image/mask(/box) transforms from config, built on torchvision.transforms.v2.

A pipeline is a list of ``{name: ..., **kwargs}`` specs, e.g.::

    transforms:
      - {name: random_resize, scale: [360, 480], ratio_range: [0.5, 2.0]}
      - {name: random_crop, size: [360, 480]}
      - {name: random_flip, p: 0.5}

:func:`build_pipeline` appends the conversion to float and the normalisation, so every pipeline
ends with images (3, H, W) float32 normalised by ``mean``/``std`` (0..1 scale). v2 resizes masks
with nearest-neighbour, and pads masks with ``ignore_index`` (images with 0) when cropping.

Builders take the engine-supplied :class:`PipelineContext` positionally and config keys as
keywords (see :mod:`segzoo.registry`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from segzoo.constants import IMAGENET_MEAN, IMAGENET_STD
from segzoo.data.instances import SanitizeInstances
from segzoo.data.keypoints import RandomHorizontalFlip
from segzoo.registry import TRANSFORMS


@dataclass(frozen=True)
class PipelineContext:
    """What transforms need from the data config: the label value used for padding."""

    ignore_index: int = 255

    @property
    def fill(self) -> dict:
        return {tv_tensors.Image: 0, tv_tensors.Mask: self.ignore_index, "others": 0}


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    if len(size) != 2:
        raise ValueError(f"size must be an int or [H, W], got {size!r}")
    return (int(size[0]), int(size[1]))


@TRANSFORMS.register("resize")
def resize(ctx: PipelineContext, /, *, size: int | list[int]) -> v2.Transform:
    """Resize to ``[H, W]`` exactly, or the shorter side to ``size`` when an int."""
    return v2.Resize(size if isinstance(size, int) else _hw(size), antialias=True)


@TRANSFORMS.register("random_resize")
def random_resize(
    ctx: PipelineContext, /, *, scale: list[int], ratio_range: list[float] = (0.5, 2.0)
) -> v2.Transform:
    """Keep the aspect ratio and resize to fit ``scale`` [H, W] times a random ratio in
    ``ratio_range`` (mmsegmentation's ``RandomResize(keep_ratio=True)``)."""
    h, w = _hw(scale)
    # v2.ScaleJitter reads target_size as (W, H): min(target[1] / height, target[0] / width)
    return v2.ScaleJitter(target_size=(w, h), scale_range=tuple(ratio_range), antialias=True)


@TRANSFORMS.register("random_crop")
def random_crop(ctx: PipelineContext, /, *, size: int | list[int]) -> v2.Transform:
    """Random crop of ``[H, W]``; smaller images are padded first (image 0, mask ignore_index)."""
    return v2.RandomCrop(_hw(size), pad_if_needed=True, fill=ctx.fill)


@TRANSFORMS.register("random_flip")
def random_flip(ctx: PipelineContext, /, *, p: float = 0.5) -> v2.Transform:
    """Horizontal flip with probability ``p``; instance keypoints swap left and right
    (:class:`~segzoo.data.keypoints.RandomHorizontalFlip`)."""
    return RandomHorizontalFlip(p)


@TRANSFORMS.register("random_rotation")
def random_rotation(ctx: PipelineContext, /, *, degrees: float = 10.0) -> v2.Transform:
    """Rotation by a random angle in [-degrees, degrees] (PSPNet uses 10); corners get
    image 0 and mask ignore_index."""
    return v2.RandomRotation(degrees, fill=ctx.fill)


@TRANSFORMS.register("color_jitter")
def color_jitter(
    ctx: PipelineContext,
    /,
    *,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    hue: float = 0.0,
) -> v2.Transform:
    """Photometric jitter of the image only."""
    return v2.ColorJitter(brightness, contrast, saturation, hue)


def build_pipeline(
    specs: Sequence[Any],
    *,
    ignore_index: int = 255,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Build a joint transform from specs (dicts or objects with ``name`` and ``kwargs``),
    ending with float conversion (0..1) and normalisation of the image. Samples with instances
    then drop the instances the transforms left empty or under 1 pixel wide or high; after a
    ``random_crop`` or ``random_rotation`` their boxes are recomputed as the tight boxes of the
    transformed masks (:class:`~segzoo.data.instances.SanitizeInstances`).

    Raises:
        RegistryError: an unknown transform name (close matches are listed).
    """
    ctx = PipelineContext(ignore_index)
    steps, names = [], []
    for spec in specs:
        name, kwargs = (spec["name"], {k: v for k, v in spec.items() if k != "name"}) \
            if isinstance(spec, dict) else (spec.name, dict(spec.kwargs))
        steps.append(TRANSFORMS.build(name, ctx, **kwargs))
        names.append(name)
    cuts = any(n in ("random_crop", "random_rotation") for n in names)
    steps += [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
        SanitizeInstances(recompute_boxes=cuts),  # instance targets stay valid after crops
    ]
    return v2.Compose(steps)


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Invert the normalisation: (B, 3, H, W) float -> uint8 0..255 (for overlays)."""
    m = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return ((images * s + m).clamp(0, 1) * 255).round().to(torch.uint8)
