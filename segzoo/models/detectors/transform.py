"""Input normalisation, resizing and batching of Mask R-CNN: torchvision's
:class:`~torchvision.models.detection.transform.GeneralizedRCNNTransform`, with the ground-truth
masks resized in chunks.

torchvision resizes every target mask of an image at once as float32 (4 bytes per pixel per
instance: 2 GB for 500 instances at 800 x 1333). Here masks are resized ``chunk`` at a time (same
nearest-neighbour result, bit for bit) and not at all when the image keeps its size, so the
memory of an image's masks stays one byte per pixel per instance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class RCNNTransform(GeneralizedRCNNTransform):
    """``GeneralizedRCNNTransform(min_size, max_size, image_mean, image_std)`` (see its docs):
    images (3, H, W) float in 0..1 are normalised by ``image_mean``/``image_std``, resized so the
    shorter side is ``min_size`` (a random one of a list in training) and the longer at most
    ``max_size``, and padded into a batch divisible by 32; targets' boxes and masks follow."""

    def __init__(self, *args, mask_chunk: int = 32, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mask_chunk = mask_chunk

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None) -> tuple[Tensor, dict | None]:
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
