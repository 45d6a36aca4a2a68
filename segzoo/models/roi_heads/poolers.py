"""RoIPool over a feature pyramid: the Mask R-CNN paper's baseline to RoIAlign (Table 2c/2d).

:class:`MultiScaleRoIPool` is torchvision's :class:`~torchvision.ops.MultiScaleRoIAlign` with
``torchvision.ops.roi_pool`` (Fast R-CNN's max pooling over bins whose boundaries are rounded to the
feature grid, after rounding the RoI itself) in place of ``roi_align``: the same featmap names, the
same scale inference and the same FPN level mapping (Lin et al. eq. 1, canonical 224 px at level 4),
so switching ``roi_op`` changes the pooling operator and nothing else.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_pool

# torchvision's own helpers, so the scales and the level mapping are exactly MultiScaleRoIAlign's
from torchvision.ops.poolers import _filter_input, _setup_scales


class MultiScaleRoIPool(MultiScaleRoIAlign):
    """Multi-scale RoIPool (see the module docstring).

    Args:
        featmap_names: the feature maps (keys of the features dict) RoIs are pooled from.
        output_size: side (or (H, W)) of the pooled map, e.g. 7 (box head) or 14 (mask head).

    ``forward(features, boxes, image_shapes)`` takes the features dict, per-image (N_i, 4) XYXY boxes
    in input-image pixels and the image sizes; returns (sum N_i, C, *output_size).
    """

    def __init__(self, featmap_names: list[str], output_size: int | tuple[int, int], *,
                 canonical_scale: int = 224, canonical_level: int = 4) -> None:
        super().__init__(featmap_names, output_size, sampling_ratio=0, canonical_scale=canonical_scale,
                         canonical_level=canonical_level)

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor],
                image_shapes: list[tuple[int, int]]) -> Tensor:
        feats = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(feats, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        concat = torch.cat(boxes, 0)
        ids = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)], 0)
        rois = torch.cat([ids, concat], 1)
        if len(feats) == 1:
            return roi_pool(feats[0], rois, self.output_size, self.scales[0])
        levels = self.map_levels(boxes)
        out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], *self.output_size))
        for level, (feat, scale) in enumerate(zip(feats, self.scales)):
            idx = torch.where(levels == level)[0]
            out[idx] = roi_pool(feat, rois[idx], self.output_size, scale).to(out.dtype)
        return out
