"""COCO (Lin et al., ECCV 2014): instances from the json through pycocotools, and semantic maps built
from the instances or read from the panoptic PNGs.

Default layout under ``root`` (``split`` e.g. ``train2017``/``val2017``), each path replaceable by
an option relative to ``root`` (in parentheses), for COCO-format data as exports ship it (Roboflow's
``valid/_annotations.coco.json``, CVAT's ``annotations/instances_default.json`` with ``images/``)::

    <split>/<file_name>                           images, file names from the json (img_dir)
    annotations/instances_<split>.json            instances: polygons, RLE, crowd RLE (ann_file)
    annotations/panoptic_<split>.json             (panoptic) segments_info per image (panoptic_json)
    annotations/panoptic_<split>/<name>.png       (panoptic) RGB segment ids: R + 256 G + 256^2 B
                                                  (panoptic_dir; <name>: the annotation's file_name)

**Category ids -> contiguous labels.** Categories are sorted by their COCO id; the i-th (1-based)
becomes instance label i, so COCO's 80 thing categories (ids 1..90 with gaps) are labels 1..80 and
0 is background, as torchvision's detection models expect. ``dataset.label_to_category[i]`` gives
the COCO id back (needed to write COCO results); ``dataset.categories`` lists them.

**Samples.** Every image of the json is a sample (images without annotations too: empty targets
``boxes`` (0, 4), ``masks`` (0, H, W), ``labels`` (0,), ``iscrowd`` (0,)). ``instances`` hold
``boxes`` (the annotation's ``bbox`` as XYXY; degenerate boxes of zero width or height are dropped
with their annotation), ``masks`` (polygons and RLE decoded by pycocotools), ``labels``, ``iscrowd``
(crowd annotations are kept and flagged unless ``include_crowd: false``; segzoo's instance
training drops them from the targets, evaluation needs them). Annotations with a zero-width or
zero-height box are counted once, with a warning, when the dataset is built.

**Keypoints** (``keypoints: true``; default json ``annotations/person_keypoints_<split>.json``):
instances also carry each annotation's ``keypoints`` (K points ``[x, y, v]``, v 0 not labelled, 1
occluded, 2 visible; K, the names and the skeleton from the category's ``keypoints``/``skeleton``),
with the left/right pairs swapped in horizontal flips (see :mod:`segzoo.data.keypoints`); OKS sigmas
for keypoint AP are COCO's for its 17 person keypoints, else ``keypoint_sigmas``.

**Semantic map** (``semantic``):

* ``"instances"``: classes are ``background`` + the instance categories (label == class index);
  non-crowd masks are painted from the largest to the smallest (small objects stay visible), crowd
  regions become ``ignore_index``, the rest is background 0.
* ``"panoptic"``: classes are the panoptic categories (things and stuff, 133 for COCO) in id order;
  unlabelled pixels (segment id 0) become ``ignore_index``. Instances are the thing segments
  (``thing_classes`` = the semantic indices of thing categories; label i is the i-th of them).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pycocotools.mask as mask_utils
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO

from segzoo.constants import COCO_PERSON_SIGMAS
from segzoo.data import problems
from segzoo.data.base import SegDataset
from segzoo.data.instances import make_instances
from segzoo.data.intensity import GreyMapping
from segzoo.data.io import read_image
from segzoo.data.keypoints import (
    COCO_PERSON_KEYPOINTS,
    add_keypoints,
    flip_index,
)
from segzoo.errors import DataError
from segzoo.paths import resolve_data_path
from segzoo.registry import DATASETS


def load_coco(path: Path) -> COCO:
    """A pycocotools COCO object (its prints silenced); DataError naming the file if unreadable."""
    if not path.is_file():
        raise DataError(problems.missing_file("annotation", path))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (json.JSONDecodeError, KeyError, TypeError, AssertionError) as exc:
        raise DataError(problems.unreadable("annotation", path, exc)) from None


def annotation_mask(segmentation, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 mask of a COCO segmentation: polygon list, uncompressed or compressed RLE."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def _window(ids: list[int], skip: int, count: int | None) -> list[int]:
    return ids[skip:] if count is None else ids[skip:skip + count]


@DATASETS.register("coco", task="semantic+instance")
class COCODataset(SegDataset):
    """COCO instances (+ semantic maps), see the module docstring.

    Args:
        root: the COCO folder (relative paths are looked up under the shared data folder too).
        split: image folder and json suffix, e.g. "train2017", "val2017".
        semantic: "instances" (semantic map painted from the instances) or "panoptic".
        include_crowd: keep crowd annotations (flagged ``iscrowd``) in ``instances``.
        max_images: use only the first N images (in image-id order, after ``skip_images``).
        skip_images: leave out the first N images (in image-id order): with ``max_images`` a
            deterministic split of one json, e.g. coco128 = first 96 (train) + last 32 (val).
        ann_file: instances json, relative to ``root`` (default ``annotations/instances_<split>.json``).
        img_dir: image folder, relative to ``root`` (default ``<split>``).
        panoptic_json, panoptic_dir: (panoptic) json and PNG folder, relative to ``root`` (default
            ``annotations/panoptic_<split>.json`` and ``annotations/panoptic_<split>``).
        image_range, image_percentiles: how single-channel 16-bit/float images map to 8 bits (see
            :mod:`segzoo.data.intensity`; default: by bit depth).
        keypoints: read each annotation's keypoints (see the module docstring).
        keypoint_sigmas: per-keypoint OKS sigmas (default: COCO's for the 17 person keypoints,
            0.05 each for other skeletons).
        ignore_index: value of crowd / unlabelled pixels in the semantic map.

    Raises:
        DataError: missing or unreadable json or folders (naming them); at load, unreadable images,
            images whose size differs from the json's ``height``/``width`` (saying when the image's
            EXIF orientation explains it) and panoptic PNGs whose size differs from the image's.
    """

    def __init__(self, *, root: str = "coco", split: str = "val2017",
                 semantic: Literal["instances", "panoptic"] = "instances", include_crowd: bool = True,
                 max_images: int | None = None, skip_images: int = 0, ann_file: str | None = None,
                 img_dir: str | None = None, panoptic_json: str | None = None, panoptic_dir: str | None = None,
                 image_range: Sequence[float] | None = None, image_percentiles: Sequence[float] | None = None,
                 keypoints: bool = False, keypoint_sigmas: Sequence[float] | None = None,
                 ignore_index: int = 255) -> None:
        super().__init__(ignore_index=ignore_index)
        self.root = resolve_data_path(root)
        self.img_dir = self.root / (img_dir if img_dir is not None else split)
        if not self.img_dir.is_dir():
            hint = "set data.*.dataset.img_dir (relative to root)" if img_dir is not None else \
                "set data.*.dataset.root and split, or img_dir"
            raise DataError(problems.missing_folder(self.img_dir, hint))
        self.semantic, self.include_crowd, self.split = semantic, include_crowd, split
        self.grey = GreyMapping.from_options(image_range, image_percentiles)
        default_ann = f"annotations/{'person_keypoints' if keypoints else 'instances'}_{split}.json"
        self.ann_file = self.root / (ann_file or default_ann)
        self.keypoints = keypoints
        if semantic == "instances":
            self.coco = load_coco(self.ann_file)
            cats = [self.coco.cats[i] for i in sorted(self.coco.getCatIds())]
            self.image_ids = _window(sorted(self.coco.getImgIds()), skip_images, max_images)
            self.images = {i: self.coco.imgs[i] for i in self.image_ids}
            self.class_names = ("background", *(c["name"] for c in cats))
            self.thing_classes = tuple(range(1, len(cats) + 1))
            thing_cats = cats
        elif semantic == "panoptic":
            self.pan_json = pan_json = self.root / (panoptic_json or f"annotations/panoptic_{split}.json")
            if not pan_json.is_file():
                raise DataError(problems.missing_file("annotation", pan_json))
            try:
                data = json.loads(pan_json.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(problems.unreadable("annotation", pan_json, exc)) from None
            cats = sorted(data["categories"], key=lambda c: c["id"])
            self.pan_dir = self.root / (panoptic_dir or f"annotations/panoptic_{split}")
            if not self.pan_dir.is_dir():
                raise DataError(problems.missing_folder(self.pan_dir, "set data.*.dataset.panoptic_dir "
                                                        "(the panoptic PNG folder, relative to root)"))
            self.panoptic = {a["image_id"]: a for a in data["annotations"]}
            self.images = {im["id"]: im for im in data["images"]}
            self.image_ids = _window(sorted(self.images), skip_images, max_images)
            self.class_names = tuple(c["name"] for c in cats)
            self.cat_to_class = {c["id"]: i for i, c in enumerate(cats)}
            self.thing_classes = tuple(i for i, c in enumerate(cats) if c.get("isthing", 1))
            thing_cats = [c for c in cats if c.get("isthing", 1)]
        else:
            raise DataError(f"coco semantic must be 'instances' or 'panoptic', got {semantic!r}")
        if semantic == "instances":  # say how many annotations are left out, once
            ids = set(self.image_ids)
            bad = sum(1 for a in self.coco.dataset.get("annotations", [])
                      if a["image_id"] in ids and self._xyxy(a["bbox"]) is None)
            if bad:
                warnings.warn(f"{self.ann_file}: {bad} annotation(s) "
                              "with a zero-width or zero-height box are dropped", stacklevel=2)
        if keypoints:
            if semantic != "instances":
                raise DataError("coco keypoints: true reads a keypoints json; it needs semantic: instances")
            self._init_keypoints(thing_cats, keypoint_sigmas)
        self.categories = [{"id": int(c["id"]), "name": c["name"]} for c in thing_cats]
        self.label_to_category = {i: int(c["id"]) for i, c in enumerate(thing_cats, start=1)}
        self.category_to_label = {c: i for i, c in self.label_to_category.items()}

    def __len__(self) -> int:
        return len(self.image_ids)

    def _init_keypoints(self, cats: list[dict], sigmas: Sequence[float] | None) -> None:
        """Keypoint names, skeleton, flip pairs and sigmas from the categories' ``keypoints``."""
        named = [c for c in cats if c.get("keypoints")]
        if not named:
            raise DataError(f"{self.ann_file}: no category lists 'keypoints'; keypoints: true needs a COCO "
                            "keypoints json (annotations/person_keypoints_<split>.json, or set ann_file)")
        names = tuple(named[0]["keypoints"])
        if any(tuple(c["keypoints"]) != names for c in named):
            raise DataError(f"{self.ann_file}: categories list different keypoints; one skeleton per dataset")
        self.keypoint_names = names
        self.skeleton = tuple((int(a) - 1, int(b) - 1) for a, b in named[0].get("skeleton", []))
        self.keypoint_flip = flip_index(names)
        if sigmas is None:
            sigmas = COCO_PERSON_SIGMAS if names == COCO_PERSON_KEYPOINTS else (0.05,) * len(names)
        if len(sigmas) != len(names):
            raise DataError(f"keypoint_sigmas has {len(sigmas)} values but {self.ann_file} has "
                            f"{len(names)} keypoints")
        self.keypoint_sigmas = tuple(float(x) for x in sigmas)

    def load(self, index: int) -> dict:
        image_id = self.image_ids[index]
        info = self.images[image_id]
        image_path = self.img_dir / info["file_name"]
        image = read_image(image_path, self.grey)
        h, w = image.shape[-2:]
        meta = {"index": index, "image_id": int(image_id), "image_path": str(image_path), "label_path": ""}
        expected = (info.get("height"), info.get("width"))
        if all(isinstance(v, int) for v in expected) and expected != (h, w):  # masks would not fit
            source = self.ann_file if self.semantic == "instances" else self.pan_json
            raise DataError(problems.size_mismatch(f"{source} (image id {image_id}: height, width)", expected,
                                                   str(image_path), (h, w)))
        if self.semantic == "instances":
            masks, labels, crowd, boxes, kps = self._instances(image_id, h, w)
            label = self._paint(masks, labels, crowd, h, w)
        else:
            pan_name = self.panoptic.get(image_id, {}).get("file_name") or Path(info["file_name"]).stem + ".png"
            pan_path = self.pan_dir / pan_name
            meta["label_path"] = str(pan_path)
            label, masks, labels, crowd, boxes = self._panoptic(image_id, pan_path, h, w)
        sample = self.make_sample(image, label, meta)
        keep = [i for i, c in enumerate(crowd) if self.include_crowd or not c]
        stacked = torch.from_numpy(np.stack([masks[i] for i in keep])) if keep else \
            torch.zeros(0, h, w, dtype=torch.uint8)
        sample["instances"] = make_instances(stacked, [labels[i] for i in keep], [crowd[i] for i in keep],
                                             torch.tensor([boxes[i] for i in keep]).reshape(-1, 4))
        if self.keypoints:
            k = len(self.keypoint_names)
            kp = torch.tensor([kps[i] for i in keep], dtype=torch.float32).reshape(-1, k, 3)
            sample["instances"] = add_keypoints(sample["instances"], kp, self.keypoint_flip)
        return sample

    @staticmethod
    def _xyxy(bbox) -> list[float] | None:
        x, y, bw, bh = (float(v) for v in bbox)
        return [x, y, x + bw, y + bh] if bw > 0 and bh > 0 else None

    def _instances(self, image_id: int, h: int, w: int):
        masks, labels, crowd, boxes, kps = [], [], [], [], []
        k = len(getattr(self, "keypoint_names", ()))
        for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id])):
            box = self._xyxy(ann["bbox"])
            if box is None:
                continue
            masks.append(annotation_mask(ann["segmentation"], h, w))
            labels.append(self.category_to_label[ann["category_id"]])
            crowd.append(int(ann.get("iscrowd", 0)))
            boxes.append(box)
            if k:
                kp = ann.get("keypoints") or [0] * (3 * k)
                if len(kp) != 3 * k:
                    raise DataError(f"{self.ann_file}: annotation {ann.get('id')} has {len(kp)} keypoint values, "
                                    f"expected {3 * k} (x, y, v for {k} keypoints)")
                kps.append(kp)
        return masks, labels, crowd, boxes, kps

    def _paint(self, masks, labels, crowd, h: int, w: int) -> torch.Tensor:
        label = np.zeros((h, w), dtype=np.int64)
        for i in [i for i, c in enumerate(crowd) if c]:
            label[masks[i] > 0] = self.ignore_index
        order = sorted((i for i, c in enumerate(crowd) if not c), key=lambda i: -int(masks[i].sum()))
        for i in order:  # largest first: smaller objects are painted over them
            label[masks[i] > 0] = labels[i]
        return torch.from_numpy(label)

    def _panoptic(self, image_id: int, path: Path, h: int, w: int):
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
        except FileNotFoundError:
            raise DataError(problems.missing_file("label", path)) from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(problems.unreadable("label", path, exc)) from None
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
        label = np.full(ids.shape, self.ignore_index, dtype=np.int64)
        masks, labels, crowd, boxes = [], [], [], []
        thing_index = {c: i for i, c in enumerate(self.thing_classes, start=1)}
        for seg in self.panoptic.get(image_id, {}).get("segments_info", []):
            cls = self.cat_to_class.get(seg["category_id"])
            if cls is None:
                continue
            m = ids == seg["id"]
            label[m] = cls
            box = self._xyxy(seg["bbox"])
            if cls in thing_index and box is not None and m.any():
                masks.append(m.astype(np.uint8))
                labels.append(thing_index[cls])
                crowd.append(int(seg.get("iscrowd", 0)))
                boxes.append(box)
        return torch.from_numpy(label), masks, labels, crowd, boxes
