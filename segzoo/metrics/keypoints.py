"""COCO keypoint AP (object keypoint similarity, OKS) through pycocotools, for
:class:`~segzoo.metrics.instance.InstanceEvaluator`.

OKS between a detection and a ground-truth instance with area s^2 (its mask area, COCO's
``area``) over the ground truth's labelled keypoints (v > 0)::

    OKS = mean_i exp(-d_i^2 / (2 s^2 (2 sigma_i)^2))

where d_i is the distance of keypoint i and sigma_i its per-keypoint constant (COCO's 17 person
sigmas, Ronchi & Perona 2017; configurable per dataset). pycocotools' ``COCOeval(iouType=
"keypoints")`` then ranks detections by score, matches them at OKS 0.50:0.05:0.95 and reports
``kp_AP``, ``kp_AP50``, ``kp_AP75``, ``kp_APm``, ``kp_APl`` (``stats[0:5]``; at most 20 detections
per image, COCO's); ground truth without labelled keypoints is ignored, as are crowd regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from segzoo.constants import COCO_PERSON_SIGMAS

KP_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl")


def flat_keypoints(keypoints: Tensor | Sequence) -> list[list[float]]:
    """(N, K, 3) ``[x, y, v]`` -> COCO's flat ``[x1, y1, v1, x2, ...]`` per instance.

    Raises:
        ValueError: another shape.
    """
    kp = torch.as_tensor(keypoints, dtype=torch.float64).detach().cpu()
    if kp.ndim != 3 or kp.shape[-1] != 3:
        raise ValueError(f"keypoints must be (N, K, 3) [x, y, visibility], got {tuple(kp.shape)}")
    return kp.reshape(kp.shape[0], kp.shape[1] * 3).tolist()


def gt_keypoint_fields(keypoints: Sequence[float] | None, num_keypoints: int) -> dict[str, Any]:
    """``keypoints`` (flat, zeros when absent) and ``num_keypoints`` (labelled ones) of a COCO
    ground-truth annotation."""
    kp = [0.0] * (3 * num_keypoints) if keypoints is None else [float(v) for v in keypoints]
    return {"keypoints": kp, "num_keypoints": int(sum(1 for v in kp[2::3] if v > 0))}


def resolve_sigmas(sigmas: Sequence[float] | None, num_keypoints: int) -> np.ndarray:
    """The OKS sigmas for K keypoints: ``sigmas``, else COCO's person sigmas when K = 17.

    Raises:
        ValueError: no sigmas for a skeleton other than COCO's 17 person keypoints, or a count
            that differs from K.
    """
    if sigmas is None:
        if num_keypoints != len(COCO_PERSON_SIGMAS):
            raise ValueError(f"keypoint AP of {num_keypoints} keypoints needs their OKS sigmas (keypoint_sigmas; "
                             "COCO's are for its 17 person keypoints)")
        sigmas = COCO_PERSON_SIGMAS
    out = np.asarray(sigmas, dtype=np.float64)
    if out.shape != (num_keypoints,):
        raise ValueError(f"{len(out)} keypoint sigmas for {num_keypoints} keypoints")
    return out


def target_keypoints(target: Any) -> Tensor | None:
    """(N, K, 3) ``[x, y, v]`` of a target dict: torchvision's ``keypoints`` (N, K, 3), or a
    dataset's ``keypoints`` (N, K, 2) with ``keypoints_visible`` (N, K) (segzoo.data.keypoints);
    None without keypoints."""
    kp = target.get("keypoints")
    if kp is None:
        return None
    kp = torch.as_tensor(kp).as_subclass(Tensor).float()
    if "keypoints_visible" in target:
        vis = torch.as_tensor(target["keypoints_visible"]).to(kp.device, kp.dtype)
        return torch.cat([kp[..., :2], vis[..., None]], -1)
    return kp


def boxes_as_masks(prediction: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """A detection dict without ``masks`` (a keypoint model's) with each box filled as its mask
    (N, H, W) bool, so its semantic map can be pasted; dicts with masks are returned as they are."""
    if "masks" in prediction:
        return prediction
    h, w = int(size[0]), int(size[1])
    boxes = torch.as_tensor(prediction["boxes"]).detach().float().cpu().reshape(-1, 4)
    ys, xs = torch.arange(h).view(1, h, 1) + 0.5, torch.arange(w).view(1, 1, w) + 0.5
    b = boxes[:, :, None, None]
    masks = (xs >= b[:, 0]) & (xs < b[:, 2]) & (ys >= b[:, 1]) & (ys < b[:, 3])
    return {**prediction, "masks": masks}
