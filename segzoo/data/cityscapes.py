"""Cityscapes (Cordts et al., CVPR 2016), fine annotations, 19 training classes.

Layout under ``root``::

    leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png

Labels are read from ``*_labelIds.png`` (the 34 label ids) and mapped to the 19 train ids of the
official ``labels.py`` table (:data:`LABEL_ID_TO_TRAIN_ID`); every other id (void, and classes
ignored in evaluation such as parking, guard rail, caravan, trailer) becomes ``ignore_index``.

With ``instances: true``, ``*_instanceIds.png`` (uint16: ``label_id * 1000 + k`` for individual
objects, the plain ``label_id`` for regions annotated as a group) gives the instances of the 8
thing classes (person, rider, car, truck, bus, train, motorcycle, bicycle = train ids 11..18): labels
1..8 (``thing_classes``), and each class's group region as one ``iscrowd`` instance.
"""

from __future__ import annotations

from pathlib import Path

import torch

from segzoo.data import problems
from segzoo.data.base import SegDataset
from segzoo.data.instances import make_instances
from segzoo.data.io import read_image, read_label
from segzoo.errors import DataError
from segzoo.paths import resolve_data_path
from segzoo.registry import DATASETS

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                      "truck", "bus", "train", "motorcycle", "bicycle")
CITYSCAPES_PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                      (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                      (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
                      (0, 80, 100), (0, 0, 230), (119, 11, 32))
# label id -> train id (cityscapesScripts labels.py); ids not listed are ignored
LABEL_ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                        24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
THING_TRAIN_IDS = tuple(range(11, 19))


@DATASETS.register("cityscapes", task="semantic+instance")
class CityscapesDataset(SegDataset):
    """Cityscapes fine annotations: 19 classes (train ids), optional thing instances.

    Args:
        root: the cityscapes folder (holding leftImg8bit/ and gtFine/).
        split: "train", "val" or "test".
        instances: also return ``instances`` from ``*_gtFine_instanceIds.png``.
        max_images: use only the first N images (sorted by file name).
        ignore_index: value given to ignored label ids.

    Raises:
        DataError: missing folders, images without label files (all named); at load, unreadable
            files or labels of the wrong size.
    """

    class_names = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE
    thing_classes = THING_TRAIN_IDS

    def __init__(self, *, root: str = "cityscapes", split: str = "train", instances: bool = False,
                 max_images: int | None = None, ignore_index: int = 255) -> None:
        super().__init__(ignore_index=ignore_index)
        self.root = resolve_data_path(root)
        img_dir, ann_dir = self.root / "leftImg8bit" / split, self.root / "gtFine" / split
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                raise DataError(problems.missing_folder(
                    d, "set data.*.dataset.root to the cityscapes folder (leftImg8bit/, gtFine/)"))
        images = sorted(img_dir.glob("*/*_leftImg8bit.png"))[:max_images]
        if not images:
            raise DataError(f"no *_leftImg8bit.png images in {img_dir}/<city>/")
        self.split, self.instances = split, instances
        self.items = [(p, self._gt(p, ann_dir, "labelIds"), self._gt(p, ann_dir, "instanceIds")) for p in images]
        needed = [it[1] for it in self.items] + ([it[2] for it in self.items] if instances else [])
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            problems.report(problems.missing_pairs(img_dir, ann_dir, missing, "add the gtFine files"),
                            kind="missing_pairs", count=len(missing))
            self.items = [it for it in self.items if it[1].is_file() and (not instances or it[2].is_file())]
        lut = torch.full((256,), ignore_index, dtype=torch.int64)
        for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
            lut[label_id] = train_id
        self.lut = lut

    @staticmethod
    def _gt(image: Path, ann_dir: Path, kind: str) -> Path:
        stem = image.name[: -len("_leftImg8bit.png")]
        return ann_dir / image.parent.name / f"{stem}_gtFine_{kind}.png"

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> dict:
        image_path, label_path, inst_path = self.items[index]
        image = read_image(image_path)
        ids = read_label(label_path)
        label = self.lut[ids.clamp(0, 255)]
        label[(ids < 0) | (ids > 255)] = self.ignore_index
        meta = {"index": index, "image_path": str(image_path), "label_path": str(label_path)}
        sample = self.make_sample(image, label, meta)
        if self.instances:
            sample["instances"] = self.instances_from_ids(read_label(inst_path))
        return sample

    def instances_from_ids(self, inst: torch.Tensor) -> dict:
        """Thing instances of an instanceIds map (see the module docstring)."""
        masks, labels, crowd = [], [], []
        for value in torch.unique(inst).tolist():
            label_id = value // 1000 if value >= 1000 else value
            train_id = LABEL_ID_TO_TRAIN_ID.get(label_id)
            if train_id not in THING_TRAIN_IDS:
                continue
            masks.append(inst == value)
            labels.append(THING_TRAIN_IDS.index(train_id) + 1)
            crowd.append(int(value < 1000))
        stacked = torch.stack(masks) if masks else torch.zeros(0, *inst.shape, dtype=torch.bool)
        return make_instances(stacked, labels, crowd)
