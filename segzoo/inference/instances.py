"""Instance predictions (torchvision detection dicts) moved between image sizes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def rescale_instances(pred: dict, from_size: Sequence[int], to_size: Sequence[int]) -> dict:
    """Boxes and masks of a detection dict predicted at ``from_size`` (H, W) moved to ``to_size``
    (probability masks bilinear, binary masks nearest)."""
    (fh, fw), (th, tw) = from_size, to_size
    if (fh, fw) == (th, tw):
        return pred
    out = dict(pred)
    scale = torch.tensor([tw / fw, th / fh, tw / fw, th / fh], device=pred["boxes"].device)
    out["boxes"] = pred["boxes"] * scale
    if "keypoints" in pred:  # (N, K, 3) [x, y, v]
        out["keypoints"] = pred["keypoints"] * scale.new_tensor([tw / fw, th / fh, 1.0])
    if "masks" in pred:
        m = pred["masks"]
        if m.numel() == 0:
            out["masks"] = m.new_zeros(*m.shape[:-2], th, tw)
        elif m.is_floating_point():
            x = m if m.ndim == 4 else m.unsqueeze(1)
            out["masks"] = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
        else:
            x = m.unsqueeze(1) if m.ndim == 3 else m
            out["masks"] = F.interpolate(x.float(), size=(th, tw), mode="nearest").squeeze(1) > 0.5
    return out
