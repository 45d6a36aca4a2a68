"""PASCAL VOC 2012 segmentation (Everingham et al.), with the SBD augmented set (Hariharan et al.)
in mmsegmentation's converted layout.

Layout under ``root`` (the ``VOC2012`` folder; a ``VOCdevkit`` folder holding it works too)::

    JPEGImages/<name>.jpg
    SegmentationClass/<name>.png        palette PNG, 0 background, 1..20 classes, 255 void (borders)
    SegmentationObject/<name>.png       palette PNG, instance ids 1..N, 0 background, 255 void
    ImageSets/Segmentation/{train,val,trainval}.txt
    SegmentationClassAug/<name>.png     (SBD, optional) class PNGs of the 10,582-image "train_aug"
    ImageSets/Segmentation/aug.txt      (SBD, optional) names of the extra images

Value 255 becomes ``ignore_index``. With ``aug: true`` the train split is ``train.txt`` (labels from
SegmentationClass) plus the names of ``aug.txt`` not in it (labels from SegmentationClassAug), as
mmsegmentation's ``voc12aug`` config. With ``instances: true`` each sample also has ``instances``
from SegmentationObject: one per object id, its class the most frequent non-void class of its pixels
in SegmentationClass, labels 1..20 (= the class index; 0 is background).
"""

from __future__ import annotations

from pathlib import Path

import torch

from segzoo.data import problems
from segzoo.data.base import SegDataset, apply_label_map
from segzoo.data.instances import instances_from_id_map
from segzoo.data.io import read_image, read_label
from segzoo.errors import DataError
from segzoo.paths import resolve_data_path
from segzoo.registry import DATASETS

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
VOID = 255


def read_name_list(path: Path, hint: str) -> list[str]:
    """Image names (one per line) of a split list."""
    if not path.is_file():
        raise DataError(problems.missing_file("split list", path) + f" ({hint})")
    names = [n.strip() for n in path.read_text().splitlines() if n.strip()]
    if not names:
        raise DataError(f"split list {path} is empty; list the image names to use, one per line")
    return names


@DATASETS.register("voc", task="semantic+instance")
class VOCDataset(SegDataset):
    """PASCAL VOC 2012 semantic segmentation (21 classes) and object instances.

    Args:
        root: the VOC2012 folder (or VOCdevkit holding it); relative paths are looked up under the
            shared data folder too.
        split: name of a list in ``ImageSets/Segmentation`` ("train", "val", "trainval").
        aug: add the SBD images of ``aug.txt`` with ``SegmentationClassAug`` labels (train split).
        instances: also return ``instances`` from ``SegmentationObject``.
        max_images: use only the first N images.
        ignore_index: value given to void (255) pixels.

    Raises:
        DataError: missing folders or lists (naming them); at load, unreadable files, labels of the
            wrong size or with values outside 0..20 and 255.
    """

    class_names = VOC_CLASSES

    def __init__(self, *, root: str = "VOCdevkit/VOC2012", split: str = "train", aug: bool = False,
                 instances: bool = False, max_images: int | None = None, ignore_index: int = 255) -> None:
        super().__init__(ignore_index=ignore_index)
        self.root = resolve_data_path(root)
        if (self.root / "VOC2012").is_dir():
            self.root = self.root / "VOC2012"
        if not (self.root / "JPEGImages").is_dir():
            raise DataError(problems.missing_folder(
                self.root / "JPEGImages", "set data.*.dataset.root to the VOC2012 folder"))
        sets = self.root / "ImageSets" / "Segmentation"
        names = read_name_list(sets / f"{split}.txt", "the VOC2012 devkit has train/val/trainval")
        label_dirs = {n: "SegmentationClass" for n in names}
        if aug:
            if not (self.root / "SegmentationClassAug").is_dir():
                raise DataError(problems.missing_folder(
                    self.root / "SegmentationClassAug",
                    "aug: true needs SBD converted to mmsegmentation's layout (SegmentationClassAug/ "
                    "and ImageSets/Segmentation/aug.txt), or set aug: false"))
            for n in read_name_list(sets / "aug.txt", "written by mmsegmentation's voc_aug converter"):
                label_dirs.setdefault(n, "SegmentationClassAug")
        self.split, self.instances = split, instances
        self.items = [(self.root / "JPEGImages" / f"{n}.jpg", self.root / d / f"{n}.png", n)
                      for n, d in label_dirs.items()][:max_images]
        missing = [str(lbl) for _, lbl, _ in self.items if not lbl.is_file()]
        if missing:
            problems.report(problems.missing_pairs(self.root / "JPEGImages", "the label folders", missing,
                                                   "add the labels or remove the names from the split list"),
                            kind="missing_pairs", count=len(missing))
            self.items = [it for it in self.items if it[1].is_file()]

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> dict:
        image_path, label_path, name = self.items[index]
        image = read_image(image_path)
        raw = read_label(label_path)
        label = apply_label_map(raw, {VOID: self.ignore_index}) if self.ignore_index != VOID else raw
        meta = {"index": index, "image_path": str(image_path), "label_path": str(label_path)}
        sample = self.make_sample(image, label, meta)
        if self.instances:
            object_path = self.root / "SegmentationObject" / f"{name}.png"
            sample["instances"] = self.object_instances(read_label(object_path), raw)
        return sample

    @staticmethod
    def object_instances(objects: torch.Tensor, classes: torch.Tensor) -> dict:
        """Instances of a SegmentationObject map given the SegmentationClass map (raw values)."""
        id_labels = {}
        for oid in torch.unique(objects).tolist():
            if oid in (0, VOID):
                continue
            cls = classes[(objects == oid) & (classes != VOID) & (classes != 0)]
            if cls.numel():
                id_labels[oid] = int(torch.mode(cls).values)
        return instances_from_id_map(objects, id_labels)
