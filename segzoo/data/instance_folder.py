"""``instance_folder``: images plus instance-id label PNGs (microscopy, custom annotation tools).

Layout under ``root``::

    images/<name>.<png|jpg|tif|...>      the images (16-bit grey: see segzoo.data.intensity)
    instances/<name>.png                 one id per pixel (8- or 16-bit): 0 = background, any other
                                         value an object; ids need not be consecutive
    instances/<name>.json                (optional, ``class_suffix: .json``) {"<id>": class, ...}
    instances/<name>.keypoints.json      (optional, with ``keypoint_names``) {"<id>": [[x, y, v], ...]}

Every non-zero id of a label PNG is one instance. Its class is ``instance_class`` (one-class
data such as cell nuclei), or the id's entry in the per-image json mapping (ids missing from the
mapping take ``instance_class``). The semantic mask is the class of each pixel's instance.
Instance labels are class indices (``thing_classes`` = every class but background 0).

With ``contour: true`` (the contour-aware training target of DCAN, Chen et al. CVPR 2016, the
usual way a semantic model separates touching nuclei) a class ``contour`` is appended to
``class_names``: object pixels that touch a pixel of another id (background or a neighbour,
4-neighbourhood) take it in the semantic mask, so touching objects are split by a two-pixel line.
It is not a thing class: instances are unchanged, and :func:`segzoo.metrics.cross_task.contour_to_instances`
decodes such a model's output into objects (``eval.instance_decoder: contour``).

With ``keypoint_names``, each instance also carries K keypoints ``[x, y, v]`` (v: 0 not labelled,
1 occluded, 2 visible) from the per-image keypoint json; instances (or images) without an entry
have none labelled. Left/right pairs swap in flips by name (see :mod:`segzoo.data.keypoints`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch

from segzoo.constants import COCO_PERSON_SIGMAS
from segzoo.data import problems
from segzoo.data.base import SegDataset
from segzoo.data.folder import image_label_pairs
from segzoo.data.instances import instances_from_id_map
from segzoo.data.intensity import GreyMapping
from segzoo.data.io import read_image, read_label
from segzoo.data.keypoints import (
    COCO_PERSON_KEYPOINTS,
    add_keypoints,
    flip_index,
    read_keypoint_file,
)
from segzoo.errors import DataError
from segzoo.paths import resolve_data_path
from segzoo.registry import DATASETS


@DATASETS.register("instance_folder", task="semantic+instance")
class InstanceFolderDataset(SegDataset):
    """Images + instance-id PNGs (see the module docstring).

    Args:
        root: dataset folder (relative paths are looked up under the shared data folder too).
        class_names: one name per class, background first (default: background, object).
        img_dir, ann_dir: folders of images and id maps, relative to ``root``.
        img_suffix: image file name ending (e.g. ``"_img.tif"``); None: any image extension.
        seg_suffix: id-map file name ending.
        split_file: optional text file (relative to ``root``) of image names to use.
        instance_class: class of every instance (or of ids missing from the json mapping).
        class_suffix: file name ending of a per-image json ``{"<id>": class}`` next to the id map
            (e.g. ``".json"``); None: every instance is ``instance_class``.
        palette: RGB colour per class.
        keypoint_names: names of the K keypoints of every instance (None: no keypoints).
        keypoint_suffix: file name ending of the per-image keypoint json next to the id map.
        skeleton: keypoint index pairs joined in drawings.
        keypoint_sigmas: per-keypoint OKS sigmas of keypoint AP (default 0.05 each; COCO's for
            COCO's 17 person keypoints).
        image_range, image_percentiles: how single-channel 8/16/32-bit and float images map to
            8 bits (see :mod:`segzoo.data.intensity`; default: by bit depth).
        contour: append a ``contour`` class marking object borders (see the module docstring).
        ignore_index: kept for the common dataset interface.

    Raises:
        DataError: missing folders, no images, two images of one name, images without an id map,
            an id map whose size differs from its image's, or a class outside 1..num_classes-1
            (naming the file).
    """

    def __init__(self, *, root: str, class_names: Sequence[str] = ("background", "object"),
                 img_dir: str = "images", ann_dir: str = "instances", img_suffix: str | None = None,
                 seg_suffix: str = ".png", split_file: str | None = None, instance_class: int = 1,
                 class_suffix: str | None = None, palette: Sequence[Sequence[int]] | None = None,
                 image_range: Sequence[float] | None = None, image_percentiles: Sequence[float] | None = None,
                 keypoint_names: Sequence[str] | None = None, keypoint_suffix: str = ".keypoints.json",
                 skeleton: Sequence[Sequence[int]] | None = None, keypoint_sigmas: Sequence[float] | None = None,
                 contour: bool = False, ignore_index: int = 255) -> None:
        super().__init__(ignore_index=ignore_index)
        self.root = resolve_data_path(root)
        self.class_names = tuple(class_names)
        if not 1 <= instance_class < len(self.class_names):
            raise ValueError(f"instance_class must lie in 1..{len(self.class_names) - 1}, got {instance_class}")
        if palette is not None:
            self.palette = [tuple(int(v) for v in c) for c in palette]
        self.contour_class: int | None = None
        if contour:
            self.thing_classes = tuple(range(1, len(self.class_names)))
            self.contour_class = len(self.class_names)
            self.class_names = (*self.class_names, "contour")
            if palette is not None:
                self.palette = [*self.palette, (255, 255, 255)]
        self.instance_class, self.class_suffix = instance_class, class_suffix
        self.grey = GreyMapping.from_options(image_range, image_percentiles)
        self.pairs = image_label_pairs(self.root, img_dir, ann_dir, seg_suffix, split_file, img_suffix)
        self.keypoint_suffix = keypoint_suffix
        if keypoint_names is not None:
            self.keypoint_names = tuple(str(n) for n in keypoint_names)
            self.keypoint_flip = flip_index(self.keypoint_names)
            self.skeleton = tuple((int(a), int(b)) for a, b in (skeleton or ()))
            if keypoint_sigmas is None:
                keypoint_sigmas = COCO_PERSON_SIGMAS if self.keypoint_names == COCO_PERSON_KEYPOINTS else \
                    (0.05,) * len(self.keypoint_names)
            if len(keypoint_sigmas) != len(self.keypoint_names):
                raise ValueError(f"keypoint_sigmas has {len(keypoint_sigmas)} values for "
                                 f"{len(self.keypoint_names)} keypoint_names")
            self.keypoint_sigmas = tuple(float(x) for x in keypoint_sigmas)

    def __len__(self) -> int:
        return len(self.pairs)

    def _classes(self, ids: list[int], label_path) -> dict[int, int]:
        mapping: dict[int, int] = {}
        if self.class_suffix is not None:
            path = label_path.with_name(label_path.name[: -len(label_path.suffix)] + self.class_suffix)
            if path.is_file():
                try:
                    mapping = {int(k): int(v) for k, v in json.loads(path.read_text()).items()}
                except (ValueError, AttributeError) as exc:
                    raise DataError(problems.unreadable("class mapping", path, exc)) from None
        classes = {i: mapping.get(i, self.instance_class) for i in ids}
        bad = sorted({c for c in classes.values() if not 1 <= c < self.num_classes})
        if bad:
            raise DataError(f"{label_path}: instance classes {bad} outside 1..{self.num_classes - 1} "
                            f"(class_names has {self.num_classes} entries)")
        return classes

    def load(self, index: int) -> dict:
        image_path, label_path = self.pairs[index]
        image, ids = read_image(image_path, self.grey), read_label(label_path)
        meta = {"index": index, "image_path": str(image_path), "label_path": str(label_path)}
        present = [int(i) for i in torch.unique(ids).tolist() if i != 0]
        classes = self._classes(present, label_path)
        lut = torch.zeros(int(ids.max()) + 1 if ids.numel() else 1, dtype=torch.int64)
        for i, c in classes.items():
            lut[i] = c
        semantic = lut[ids]
        if self.contour_class is not None:
            semantic[contour_pixels(ids)] = self.contour_class
        sample = self.make_sample(image, semantic, meta)
        sample["instances"] = instances_from_id_map(ids, classes)
        if getattr(self, "keypoint_names", None):
            path = label_path.with_name(label_path.name[: -len(label_path.suffix)] + self.keypoint_suffix)
            kp = read_keypoint_file(path, sorted(classes), len(self.keypoint_names))
            sample["instances"] = add_keypoints(sample["instances"], kp, self.keypoint_flip)
        return sample


def contour_pixels(ids: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: object pixels (id > 0) with a 4-neighbour of another id (image borders do not
    count)."""
    pad = torch.nn.functional.pad(ids[None, None].float(), (1, 1, 1, 1), mode="replicate")[0, 0]
    c = pad[1:-1, 1:-1]
    differs = (pad[:-2, 1:-1] != c) | (pad[2:, 1:-1] != c) | (pad[1:-1, :-2] != c) | (pad[1:-1, 2:] != c)
    return differs & (ids > 0)


__all__ = ["InstanceFolderDataset", "contour_pixels"]
