"""Cross-task scoring: instance predictions as a semantic map, semantic predictions as instances.

So that "semantic vs instance" is one table, every model gets both rows on the same data:

* **instance -> semantic** (:func:`instances_to_semantic`): detections with score >= a threshold are
  pasted in descending score order, each pixel taking the class of the highest-scoring mask that
  covers it (mask probability > 0.5); uncovered pixels get the background class. The map is then
  scored by the semantic metrics.
* **semantic -> instances** (:func:`semantic_to_instances`): the argmax map is split into connected
  components per thing class (8-connectivity by default); each component is one instance with its
  class, its mask, its bounding box and score = the mean probability of its class over its pixels.
  The instances are then scored by COCO AP.

Class/label convention: instance label ``i`` (1..K, 0 = background, torchvision's) is semantic class
``thing_classes[i - 1]``; by default ``thing_classes`` = every class but 0, so label == class index
(shapes, VOC, COCO-from-instances). Datasets whose instance categories are a subset (Cityscapes:
trainIds 11..18) declare ``thing_classes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from segzoo.metrics.instance import binary_masks


def connected_components(labels: np.ndarray | Tensor, *, foreground: np.ndarray | Tensor | None = None,
                         connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Label the connected regions of equal value in a label map.

    Two pixels are connected when they are neighbours (4: edge, 8: edge or corner) with the same
    value and both foreground. Vectorised union-find (hooking to the smaller root plus pointer
    jumping; a few rounds for ordinary shapes), numpy only.

    Args:
        labels: (H, W) integer map.
        foreground: (H, W) bool, pixels to label (default: all).
        connectivity: 4 or 8.

    Returns:
        (components (H, W) int64 with 0 for background and 1..n numbered in raster order of their
        first pixel, n).
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    lab = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {lab.shape}")
    fg = np.ones(lab.shape, bool) if foreground is None else np.asarray(
        foreground.cpu() if isinstance(foreground, Tensor) else foreground, dtype=bool)
    h, w = lab.shape
    idx = np.arange(h * w, dtype=np.int64).reshape(h, w)
    offsets = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if connectivity == 8 else [])
    a_list, b_list = [], []
    for dy, dx in offsets:  # pixel (y, x) and its neighbour (y + dy, x + dx), both inside
        x0, x1 = max(0, -dx), w - max(0, dx)
        sa = (slice(0, h - dy), slice(x0, x1))
        sb = (slice(dy, h), slice(x0 + dx, x1 + dx))
        same = (lab[sa] == lab[sb]) & fg[sa] & fg[sb]
        a_list.append(idx[sa][same])
        b_list.append(idx[sb][same])
    a, b = np.concatenate(a_list), np.concatenate(b_list)
    parent = np.arange(h * w, dtype=np.int64)
    while a.size:
        pa, pb = parent[a], parent[b]
        keep = pa != pb
        a, b, pa, pb = a[keep], b[keep], pa[keep], pb[keep]
        if not a.size:
            break
        np.minimum.at(parent, np.maximum(pa, pb), np.minimum(pa, pb))
        while True:  # pointer jumping: every pixel points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    roots = parent.reshape(h, w)
    out = np.zeros((h, w), dtype=np.int64)
    if fg.any():
        uniq, inverse = np.unique(roots[fg], return_inverse=True)  # roots are first pixels: raster order
        out[fg] = inverse.reshape(-1) + 1
        return out, int(uniq.size)
    return out, 0


def default_thing_classes(num_classes: int) -> list[int]:
    """Every class but 0 (the background)."""
    return list(range(1, num_classes))


def instances_to_semantic(prediction: Mapping[str, Any], image_size: tuple[int, int], *,
                          score_threshold: float = 0.5, mask_threshold: float = 0.5,
                          thing_classes: Sequence[int] | None = None, background: int = 0,
                          num_classes: int | None = None) -> Tensor:
    """Paste instance masks into a semantic label map (see the module docstring).

    Args:
        prediction: torchvision detection output of one image (``labels``, ``scores``, ``masks``
            (N, 1, H, W) probabilities or (N, H, W) bool at the image's size).
        image_size: (H, W).
        score_threshold: detections below it are dropped.
        thing_classes: semantic class of each label 1..K (default: label == class).
        background: class of uncovered pixels.
        num_classes: checks that every class lies in [0, num_classes).

    Returns:
        (H, W) int64 class map.
    """
    h, w = image_size
    out = torch.full((h, w), background, dtype=torch.int64)
    scores = torch.as_tensor(prediction["scores"]).reshape(-1).cpu()
    if scores.numel() == 0:
        return out
    masks = binary_masks(prediction["masks"], mask_threshold)
    if tuple(masks.shape[-2:]) != (h, w):
        raise ValueError(f"masks are {tuple(masks.shape[-2:])} but the image is {(h, w)}")
    labels = torch.as_tensor(prediction["labels"]).reshape(-1).cpu().long()
    classes = labels if thing_classes is None else torch.as_tensor(list(thing_classes))[labels - 1]
    if num_classes is not None and bool(((classes < 0) | (classes >= num_classes)).any()):
        raise ValueError(f"instance classes {classes.unique().tolist()} outside [0, {num_classes})")
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[scores[order] >= score_threshold]
    painted = torch.zeros(h, w, dtype=torch.bool)
    for i in order.tolist():
        new = masks[i] & ~painted
        out[new] = classes[i]
        painted |= new
    return out


def semantic_to_instances(probs: Tensor, *, thing_classes: Sequence[int] | None = None,
                          connectivity: int = 8, min_area: int = 1,
                          labels: Tensor | None = None) -> dict[str, Tensor]:
    """Connected components of the argmax map as instances (see the module docstring).

    Args:
        probs: (K, H, W) class probabilities (softmax of the logits) of one image.
        thing_classes: semantic classes that have instances; label i is ``thing_classes[i - 1]``
            (default: every class but 0).
        connectivity: 4 or 8.
        min_area: components smaller than this many pixels are dropped.
        labels: the (H, W) class map if already computed (default ``probs.argmax(0)``).

    Returns:
        torchvision-style ``{"boxes": (N, 4) float XYXY (pixel edges, x2 = last column + 1),
        "labels": (N,) int64, "scores": (N,) float, "masks": (N, H, W) bool}`` sorted by score.
    """
    probs = probs.detach().float().cpu()
    k, h, w = probs.shape
    things = default_thing_classes(k) if thing_classes is None else [int(c) for c in thing_classes]
    cls_map = (probs.argmax(0) if labels is None else labels.cpu().long()).numpy()
    lut = np.zeros(max(k, 1), dtype=np.int64)
    lut[things] = np.arange(1, len(things) + 1)
    is_thing = np.zeros(k, bool)
    is_thing[things] = True
    fg = is_thing[cls_map]
    comp, n = connected_components(cls_map, foreground=fg, connectivity=connectivity)
    own_prob = np.take_along_axis(probs.numpy().reshape(k, -1), cls_map.reshape(1, -1), 0)[0]
    return _component_instances(comp, n, cls_map, own_prob, lut, min_area)


def _component_instances(comp: np.ndarray, n: int, cls_map: np.ndarray, score_map: np.ndarray,
                         lut: np.ndarray, min_area: int) -> dict[str, Tensor]:
    """Instances of an id map ``comp`` (ids 1..n): class of any pixel of each (via ``lut``), score
    the mean of ``score_map`` (flat) over its pixels, tight boxes; sorted by score."""
    h, w = comp.shape
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "scores": torch.zeros(0), "masks": torch.zeros(0, h, w, dtype=torch.bool)}
    if n == 0:
        return empty
    flat = comp.ravel()
    area = np.bincount(flat, minlength=n + 1)[1:]
    score = np.bincount(flat, weights=score_map, minlength=n + 1)[1:] / np.maximum(area, 1)
    first = np.full(n + 1, -1, dtype=np.int64)
    pix = np.nonzero(flat)[0]
    first[flat[pix[::-1]]] = pix[::-1]  # any pixel of each component gives its class
    comp_class = cls_map.ravel()[first[1:]]
    ys, xs = np.divmod(pix, w)
    ids = flat[pix]
    x1, y1 = np.full(n + 1, w), np.full(n + 1, h)
    x2, y2 = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64)
    np.minimum.at(x1, ids, xs)
    np.minimum.at(y1, ids, ys)
    np.maximum.at(x2, ids, xs + 1)
    np.maximum.at(y2, ids, ys + 1)
    keep = np.nonzero((area >= min_area) & (first[1:] >= 0))[0]
    if keep.size == 0:
        return empty
    keep = keep[np.argsort(-score[keep], kind="stable")]
    comp_t = torch.from_numpy(comp)
    masks = comp_t.unsqueeze(0) == torch.from_numpy(keep + 1).view(-1, 1, 1)
    boxes = np.stack([x1[keep + 1], y1[keep + 1], x2[keep + 1], y2[keep + 1]], 1)
    return {"boxes": torch.from_numpy(boxes).float(),
            "labels": torch.from_numpy(lut[comp_class[keep]]),
            "scores": torch.from_numpy(score[keep]).float(),
            "masks": masks}


def contour_to_instances(probs: Tensor, contour_class: int, *, thing_classes: Sequence[int] | None = None,
                         connectivity: int = 8, min_area: int = 1, labels: Tensor | None = None,
                         grow: int = 3) -> dict[str, Tensor]:
    """Instances of a model trained with a contour class (the contour-aware decoding of DCAN,
    Chen et al., CVPR 2016, as used for touching nuclei): the connected components of the object
    classes **without** the contour pixels are the seeds; contour pixels then join the seed next to
    them, one pixel ring per step for ``grow`` steps (4-neighbours, ties to the larger id), so two
    touching objects separated by a predicted contour stay two objects.

    Args:
        probs: (K, H, W) class probabilities; class 0 background, ``contour_class`` the contour.
        contour_class: index of the contour class (not an object class).
        thing_classes: object classes, label i is ``thing_classes[i - 1]`` (default: every class
            but 0 and the contour).
        connectivity, min_area, labels: as :func:`semantic_to_instances`.
        grow: steps of seed growth into contour pixels (about the contour's width in pixels).

    Returns:
        the detection dict of :func:`semantic_to_instances`; score = mean foreground
        probability (1 - p(background)) over each object's pixels.
    """
    probs = probs.detach().float().cpu()
    k, h, w = probs.shape
    if not 0 < contour_class < k:
        raise ValueError(f"contour_class must lie in 1..{k - 1}, got {contour_class}")
    things = [c for c in range(1, k) if c != contour_class] if thing_classes is None else [int(c) for c in thing_classes]
    if contour_class in things:
        raise ValueError(f"the contour class {contour_class} cannot also be an object class {things}")
    cls_map = (probs.argmax(0) if labels is None else labels.cpu().long()).numpy()
    lut = np.zeros(max(k, 1), dtype=np.int64)
    lut[things] = np.arange(1, len(things) + 1)
    is_thing = np.zeros(k, bool)
    is_thing[things] = True
    comp, n = connected_components(cls_map, foreground=is_thing[cls_map], connectivity=connectivity)
    todo = cls_map == contour_class
    for _ in range(grow):
        if not todo.any():
            break
        pad = np.pad(comp, 1)
        near = np.maximum.reduce([pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]])
        take = todo & (near > 0)
        if not take.any():
            break
        comp = np.where(take, near, comp)
        todo &= ~take
    # grown pixels take their seed's class (for the labels), the seed keeps its own
    seed_class = np.zeros(n + 1, dtype=np.int64)
    seed_pix = (comp > 0) & is_thing[cls_map]
    seed_class[comp[seed_pix]] = cls_map[seed_pix]
    fg_prob = 1.0 - probs[0].numpy().reshape(-1)
    return _component_instances(comp, n, seed_class[comp], fg_prob, lut, min_area)
