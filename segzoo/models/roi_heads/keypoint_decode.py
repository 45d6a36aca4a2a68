"""Keypoints from Keypoint R-CNN's heatmaps, with one host sync per image instead of two per RoI.

The paper's inference (He et al., ICCV 2017, sec. 5), as torchvision's ``heatmaps_to_keypoints``
computes it: each RoI's K heatmaps (56 x 56 logits) are resized bicubically to the RoI's size in
whole pixels (``ceil`` of its width and height, at least 1), the argmax of each is the keypoint,
its pixel centre mapped back into the image, and the heatmap value there is the keypoint's score.

torchvision reads every RoI's size back to the host separately (``int(widths_ceil[i].item())``,
twice per RoI) and writes each RoI's results with a dozen small operators: about 20 operators and 2
host syncs per detection, 2,108 operators and 200 syncs for 100 detections
(``benchmarks/detector_ops.py``). :func:`heatmaps_to_keypoints` reads all sizes in one go and does
per RoI only what needs its size (the resize, the argmax, reading the score), the rest once for
all RoIs. Same operators on the same values, rounded the same way on the CPU and on CUDA, so the
same results bit for bit (``tests/models/test_keypoint_decode.py``; on a GPU
``tests/cuda/test_cuda_postprocess.py``). Under the ONNX tracer torchvision's traceable loop runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor
from torchvision.models.detection import roi_heads as tv_roi_heads


def heatmaps_to_keypoints(maps: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
    """Keypoints and their scores from the heatmaps of one image's RoIs.

    Args:
        maps: (N, K, M, M) heatmap logits (Keypoint R-CNN's predictor output, M = 56), any float dtype.
        rois: (N, 4) float boxes (x1, y1, x2, y2) in the image's pixels.

    Returns:
        keypoints (N, K, 3) float32 ``[x, y, 1]`` in the image's pixels, and scores (N, K) float32
        (the heatmap logit at the keypoint), equal to torchvision's ``heatmaps_to_keypoints``.

    Raises:
        ValueError: ``maps`` not (N, K, M, M') or ``rois`` not (N, 4).
    """
    if maps.dim() != 4 or rois.dim() != 2 or rois.shape != (maps.shape[0], 4):
        raise ValueError(f"maps (N, K, M, M) and rois (N, 4) expected, got {tuple(maps.shape)} and "
                         f"{tuple(rois.shape)}")
    if torchvision._is_tracing():
        return tv_roi_heads.heatmaps_to_keypoints(maps, rois)
    n, k = maps.shape[:2]
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    widths_ceil, heights_ceil = widths.ceil(), heights.ceil()
    keypoints = torch.zeros((n, k, 3), dtype=torch.float32, device=maps.device)
    scores = torch.zeros((n, k), dtype=torch.float32, device=maps.device)
    if n == 0:
        return keypoints, scores
    sizes = torch.stack([heights_ceil, widths_ceil], 1).to(torch.int64).tolist()  # the one host sync
    positions, values = [], []
    for i, (h, w) in enumerate(sizes):
        roi_map = F.interpolate(maps[i][:, None], size=(h, w), mode="bicubic", align_corners=False)
        flat = roi_map.reshape(k, -1)
        pos = flat.argmax(dim=1)
        positions.append(pos)
        values.append(flat.gather(1, pos[:, None])[:, 0])
    pos = torch.stack(positions)  # (N, K) flat index into each RoI's h x w map
    row_width = widths_ceil.to(torch.int64)[:, None]
    x_int = pos % row_width
    y_int = torch.div(pos - x_int, row_width, rounding_mode="floor")
    keypoints[..., 0] = (x_int.float() + 0.5) * _correction(widths, widths_ceil)[:, None] + rois[:, 0, None]
    keypoints[..., 1] = (y_int.float() + 0.5) * _correction(heights, heights_ceil)[:, None] + rois[:, 1, None]
    keypoints[..., 2] = 1
    scores[:] = torch.stack(values)
    return keypoints, scores


def _correction(sizes: Tensor, sizes_ceil: Tensor) -> Tensor:
    """torchvision's ``widths[i] / int(ceil(widths[i]))`` for all RoIs, rounded as torchvision's is:
    a float32 tensor divided by a Python int is ``a / b`` on the CPU but ``a * (1 / b)`` on CUDA
    (PyTorch's ``div_true_kernel_cuda`` multiplies by the reciprocal of a CPU scalar), which can
    differ from the quotient in the last bit."""
    return sizes * sizes_ceil.reciprocal() if sizes.is_cuda else sizes / sizes_ceil


def keypoints_from_heatmaps(maps: Tensor, boxes: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """:func:`heatmaps_to_keypoints` image by image: ``maps`` (sum N_i, K, M, M) for the boxes of
    every image (``boxes[i]``: (N_i, 4)); returns per image keypoints (N_i, K, 3) and scores
    (N_i, K) (torchvision's ``keypointrcnn_inference``)."""
    per_image = maps.split([b.shape[0] for b in boxes], dim=0)
    out = [heatmaps_to_keypoints(m, b) for m, b in zip(per_image, boxes)]
    return [kp for kp, _ in out], [s for _, s in out]
