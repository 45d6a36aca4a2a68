"""Keypoint annotations of instances: their layout in samples, the left/right flip that swaps them,
the COCO person skeleton and its OKS sigmas.

In a sample, keypoints ride in the ``instances`` dict next to the boxes and masks::

    "keypoints":         tv_tensors.KeyPoints (N, K, 2) float [x, y] in pixel coordinates
    "keypoints_visible": (N, K) int64 COCO visibility: 0 not labelled (or left the image),
                         1 labelled but occluded, 2 labelled and visible
    "keypoint_flip":     (K,) int64: the keypoint that keypoint k becomes in a horizontal flip
                         (left_eye <-> right_eye, ...; k itself when unpaired)

``KeyPoints`` are moved by every torchvision.transforms.v2 geometric transform with the image
(resize, crop, pad, rotation, flip). A horizontal flip alone would leave the left eye's index on
the right eye: :class:`RandomHorizontalFlip` (segzoo's ``random_flip``) also permutes the keypoints
by ``keypoint_flip``. Keypoints that leave the image are marked 0 (not labelled) by the pipeline's
final :class:`~segzoo.data.instances.SanitizeInstances`, so the loss and the metrics ignore them.
Models take and return them as torchvision does: ``keypoints`` (N, K, 3) ``[x, y, v]``
(:func:`keypoints_xyv`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision import tv_tensors
from torchvision.transforms import v2

from segzoo.versions import release

COCO_PERSON_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle")
# COCO's person skeleton (person_keypoints json, 1-based there), 0-based pairs
COCO_PERSON_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
    (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))

_SIDES = (("left", "right"), ("l_", "r_"), ("_l", "_r"))


def flip_index(names: Sequence[str]) -> list[int]:
    """The keypoint each keypoint becomes in a horizontal flip, paired by name: ``left``/``right``
    anywhere in the name (``left_eye`` <-> ``right_eye``), or ``l_``/``r_`` prefixes and
    ``_l``/``_r`` suffixes; unpaired keypoints (``nose``) map to themselves.

    Raises:
        ValueError: repeated names.
    """
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError(f"keypoint names repeat: {names}")
    where = {n: i for i, n in enumerate(names)}
    out = list(range(len(names)))
    for i, n in enumerate(names):
        low = n.lower()
        for a, b in _SIDES:
            for x, y in ((a, b), (b, a)):
                cand = None
                if len(x) > 2 and x in low:
                    cand = low.replace(x, y)
                elif x.startswith("_") and low.endswith(x):
                    cand = low[: -len(x)] + y
                elif x.endswith("_") and low.startswith(x):
                    cand = y + low[len(x):]
                if cand is not None:
                    match = [j for m, j in where.items() if m.lower() == cand]
                    if match:
                        out[i] = match[0]
                        break
            if out[i] != i:
                break
    return out


def keypoint_transforms_supported() -> bool:
    """This torchvision moves keypoints as the pipeline needs (>= 0.24): 0.22 has no
    ``tv_tensors.KeyPoints``; 0.23's crop clamps them to the crop's border, where
    :class:`~segzoo.data.instances.SanitizeInstances` can no longer tell that they left it."""
    import torchvision

    return hasattr(tv_tensors, "KeyPoints") and release(torchvision.__version__) >= (0, 24)


def add_keypoints(instances: dict, keypoints: Tensor, flip: Sequence[int]) -> dict:
    """``instances`` plus ``keypoints``/``keypoints_visible``/``keypoint_flip`` (see the module
    docstring) from ``keypoints`` (N, K, 3) ``[x, y, v]`` and the flip permutation (K,).

    Raises:
        ValueError: ``keypoints`` not (N, K, 3) for the N instances, or ``flip`` not a permutation
            of 0..K-1.
        RuntimeError: a torchvision before 0.24: 0.22 has no ``tv_tensors.KeyPoints``, and 0.23
            clamps them into a crop, so points that leave it would stay labelled.
    """
    if not keypoint_transforms_supported():
        import torchvision

        raise RuntimeError(f"keypoint data needs torchvision >= 0.24 (tv_tensors.KeyPoints, moved by the v2 "
                           f"transforms and left unclamped by crops); this is torchvision {torchvision.__version__}: "
                           "upgrade it (constraints.txt pins a version that has it)")
    n = len(instances["labels"])
    kp = torch.as_tensor(keypoints, dtype=torch.float32)
    if kp.numel() == 0:
        kp = kp.reshape(0, len(flip), 3)
    if kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] != 3:
        raise ValueError(f"keypoints must be (N={n}, K, 3) [x, y, visibility], got {tuple(kp.shape)}")
    flip_t = torch.as_tensor(list(flip), dtype=torch.int64)
    if kp.shape[1] != len(flip_t) or sorted(flip_t.tolist()) != list(range(len(flip_t))):
        raise ValueError(f"keypoint_flip must be a permutation of 0..{kp.shape[1] - 1}, got {flip_t.tolist()}")
    canvas = tuple(instances["masks"].shape[-2:]) if "masks" in instances else tuple(instances["boxes"].canvas_size)
    return {**instances, "keypoints": tv_tensors.KeyPoints(kp[..., :2].contiguous(), canvas_size=canvas),
            "keypoints_visible": kp[..., 2].round().to(torch.int64), "keypoint_flip": flip_t}


def keypoints_xyv(instances: dict) -> Tensor | None:
    """torchvision's (N, K, 3) float ``[x, y, v]`` of an instances dict, or None without keypoints."""
    kp = instances.get("keypoints")
    if kp is None:
        return None
    xy = kp.as_subclass(Tensor).float()
    vis = torch.as_tensor(instances["keypoints_visible"]).to(xy.device, xy.dtype)
    return torch.cat([xy, vis[..., None]], -1)


def mark_outside(instances: dict) -> dict:
    """Visibility 0 for keypoints outside the image (after a crop, rotation or pad)."""
    kp = instances.get("keypoints")
    if kp is None or kp.numel() == 0:
        return instances
    h, w = kp.canvas_size
    xy = kp.as_subclass(Tensor)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= w - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= h - 1)
    vis = torch.as_tensor(instances["keypoints_visible"])
    return {**instances, "keypoints_visible": torch.where(inside, vis, torch.zeros_like(vis))}


def swap_flip_pairs(sample: Any) -> Any:
    """Permute the keypoints of ``sample["instances"]`` (and ``keypoints_visible``) by their
    ``keypoint_flip``: what a horizontal flip of the image needs (left becomes right)."""
    inst = sample.get("instances") if isinstance(sample, dict) else None
    if not inst or inst.get("keypoints") is None or inst.get("keypoint_flip") is None:
        return sample
    idx = inst["keypoint_flip"].to(torch.int64)
    kp = inst["keypoints"]
    swapped = tv_tensors.wrap(kp.as_subclass(Tensor)[:, idx], like=kp)
    vis = torch.as_tensor(inst["keypoints_visible"])[:, idx]
    return {**sample, "instances": {**inst, "keypoints": swapped, "keypoints_visible": vis}}


class RandomHorizontalFlip(v2.RandomHorizontalFlip):
    """``v2.RandomHorizontalFlip(p)`` that also swaps left and right keypoints (see the module
    docstring). It draws the same random numbers as v2's, so pipelines without keypoints flip
    exactly as before. Samples are dicts whose image is a ``tv_tensors.Image`` (segzoo's); plain
    tensors in them are left alone, as v2 does when an image is present."""

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        if torch.rand(1) >= self.p:
            return sample
        flat, spec = tree_flatten(sample)
        flat = [self.transform(x, {}) if isinstance(x, tv_tensors.TVTensor) else x for x in flat]
        return swap_flip_pairs(tree_unflatten(flat, spec))


def read_keypoint_file(path: Path, ids: Sequence[int], num_keypoints: int) -> Tensor:
    """(N, K, 3) ``[x, y, v]`` of the instances ``ids`` (in that order) from a per-image json
    ``{"<instance id>": [[x, y, v], ... K points]}``; instances missing from it, or a missing
    file, get K unlabelled points (v = 0).

    Raises:
        DataError: unreadable json, or an entry that is not K ``[x, y, v]`` triples (naming the
            file and the id).
    """
    from segzoo.errors import DataError

    out = torch.zeros(len(ids), num_keypoints, 3)
    if not path.is_file():
        return out
    try:
        data = {int(k): v for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the keypoint file ({exc}); expected "
                        '{"<instance id>": [[x, y, v], ...]}') from None
    for row, i in enumerate(ids):
        if i not in data:
            continue
        kp = torch.as_tensor(data[i], dtype=torch.float32) if isinstance(data[i], list) else None
        if kp is None or tuple(kp.shape) != (num_keypoints, 3):
            raise DataError(f"{path}: instance {i} needs {num_keypoints} [x, y, v] keypoints "
                            f"(keypoint_names has {num_keypoints}), got {data[i]!r:.80}")
        out[row] = kp
    return out
