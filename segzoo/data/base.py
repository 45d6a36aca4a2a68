"""The semantic dataset contract and its checks.

A sample is a dict::

    {"image": tv_tensors.Image (3, H, W) uint8 (float32 normalised after the pipeline),
     "mask":  tv_tensors.Mask (H, W) int64, values in [0, num_classes) or ignore_index,
     "meta":  {"index": int, "image_path": str, "label_path": str, "orig_size": (H, W)}}

Datasets with instance annotations add ``"instances"``: ``{"boxes": BoundingBoxes (N, 4) XYXY,
"masks": Mask (N, H, W) uint8, "labels": (N,) int64 in 1..K (0 = background, torchvision's),
"iscrowd": (N,) int64}`` (see :mod:`segzoo.data.shapes`); instance label i is semantic class
``thing_classes[i - 1]`` (default: every class but 0, i.e. label == class index).

With ``keep_original = True`` (set by evaluation), a sample whose transforms changed its size also
carries the untransformed ``meta["orig_mask"]`` (H, W) int64 tensor (and ``meta["orig_instances"]``),
so metrics can be computed at the label's original resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from segzoo.data import problems
from segzoo.data.palette import default_palette


class SegDataset(Dataset):
    """Base class: subclasses implement ``__len__`` and :meth:`load`.

    Attributes:
        class_names: one name per class index.
        palette: one RGB colour per class.
        ignore_index: label value excluded from loss and metrics.
        transforms: joint image/mask transform applied by ``__getitem__`` (set by the engine).
    """

    class_names: tuple[str, ...] = ()
    palette: Sequence[tuple[int, int, int]] | None = None
    thing_classes: tuple[int, ...] | None = None  # None: every class but 0

    def __init__(self, *, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index
        self.transforms: Callable[[dict], dict] | None = None
        self.keep_original = False

    def things(self) -> list[int]:
        """Semantic class of each instance label 1..K (see the module docstring)."""
        return list(self.thing_classes) if self.thing_classes is not None else list(range(1, self.num_classes))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def colors(self) -> list[tuple[int, int, int]]:
        """The palette, falling back to :func:`default_palette`."""
        return list(self.palette) if self.palette else default_palette(self.num_classes)

    def load(self, index: int) -> dict[str, Any]:  # pragma: no cover - abstract
        """Return the untransformed sample dict (uint8 image, int64 mask, meta)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        sample = self.load(index % len(self))
        if self.transforms is not None:
            original = (sample["mask"], sample.get("instances")) if self.keep_original else None
            sample = self.transforms(sample)
            if original is not None and sample["mask"].shape[-2:] != original[0].shape[-2:]:
                sample["meta"]["orig_mask"] = original[0].as_subclass(torch.Tensor)
                if original[1] is not None:
                    sample["meta"]["orig_instances"] = original[1]
        return sample

    def check_label(self, label: torch.Tensor, image: torch.Tensor, meta: dict) -> None:
        """Report (raise :class:`DataError`, or record during ``segzoo data check``) a label of the
        wrong size or with values outside ``[0, num_classes)`` that are not ``ignore_index``; the
        messages (:mod:`segzoo.data.problems`) name the files."""
        where = meta.get("label_path") or f"sample {meta.get('index')}"
        if label.shape != image.shape[-2:]:
            problems.report(problems.size_mismatch(where, label.shape, meta.get("image_path", ""),
                                                   image.shape[-2:]))
        if label.numel() == 0:
            return
        lo, hi = torch.aminmax(label)
        if lo >= 0 and hi < self.num_classes:  # the common case, without a full mask
            return
        bad = (label < 0) | ((label >= self.num_classes) & (label != self.ignore_index))
        if bool(bad.any()):
            values = torch.unique(label[bad]).tolist()[:10]
            problems.report(problems.bad_values(where, values, self.num_classes, self.ignore_index))

    def make_sample(self, image: torch.Tensor, label: torch.Tensor, meta: dict) -> dict[str, Any]:
        """Check ``label`` and wrap the pair as a sample dict of tv_tensors."""
        self.check_label(label, image, meta)
        meta.setdefault("orig_size", tuple(image.shape[-2:]))
        return {"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(label), "meta": meta}


def apply_label_map(label: torch.Tensor, label_map: dict[int, int] | None) -> torch.Tensor:
    """Return ``label`` with each stored value ``k`` replaced by ``label_map[k]``."""
    if not label_map:
        return label
    out = label.clone()
    for src, dst in label_map.items():
        out[label == src] = dst
    return out
