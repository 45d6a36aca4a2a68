"""ADE20K SceneParsing (MIT Scene Parsing Benchmark, Zhou et al. CVPR 2017), 150 classes.

Layout under ``root`` (the ``ADEChallengeData2016`` folder)::

    images/{training,validation}/ADE_{train,val}_XXXXXXXX.jpg
    annotations/{training,validation}/ADE_{train,val}_XXXXXXXX.png    values 0..150

``reduce_zero_label`` (mmsegmentation's convention, on by default): value 0 ("other objects", not
one of the 150 classes) becomes ``ignore_index`` and values 1..150 become classes 0..149.
"""

from __future__ import annotations

from segzoo.data import problems
from segzoo.data.base import SegDataset
from segzoo.data.io import read_image, read_label
from segzoo.errors import DataError
from segzoo.paths import resolve_data_path
from segzoo.registry import DATASETS

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair",
    "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box",
    "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet",
    "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower",
    "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle",
    "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle",
    "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower",
    "radiator", "glass", "clock", "flag",
)
_SPLITS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}


@DATASETS.register("ade20k", task="semantic")
class ADE20KDataset(SegDataset):
    """ADE20K SceneParsing: 150 classes (0 = "other" ignored with ``reduce_zero_label``).

    Args:
        root: the ADEChallengeData2016 folder.
        split: "train"/"training" or "val"/"validation".
        reduce_zero_label: 0 -> ignore_index, k -> k - 1 (the standard 150-class protocol).
        max_images: use only the first N images (sorted by name).
        ignore_index: value given to ignored pixels.

    Raises:
        DataError: missing folders, images without annotation (all named); at load, unreadable
            files, wrong sizes, values above 150.
    """

    class_names = ADE20K_CLASSES

    def __init__(self, *, root: str = "ADEChallengeData2016", split: str = "train",
                 reduce_zero_label: bool = True, max_images: int | None = None,
                 ignore_index: int = 255) -> None:
        super().__init__(ignore_index=ignore_index)
        if split not in _SPLITS:
            raise DataError(f"ADE20K split must be one of {sorted(_SPLITS)}, got {split!r}")
        self.root = resolve_data_path(root)
        folder = _SPLITS[split]
        img_dir, ann_dir = self.root / "images" / folder, self.root / "annotations" / folder
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                raise DataError(problems.missing_folder(
                    d, "set data.*.dataset.root to the ADEChallengeData2016 folder"))
        images = sorted(img_dir.glob("*.jpg"))[:max_images]
        if not images:
            raise DataError(f"no .jpg images in {img_dir}")
        self.reduce_zero_label = reduce_zero_label
        if not reduce_zero_label:
            self.class_names = ("other", *ADE20K_CLASSES)
        self.pairs = [(p, ann_dir / f"{p.stem}.png") for p in images]
        missing = [str(lbl) for _, lbl in self.pairs if not lbl.is_file()]
        if missing:
            problems.report(problems.missing_pairs(img_dir, ann_dir, missing),
                            kind="missing_pairs", count=len(missing))
            self.pairs = [pair for pair in self.pairs if pair[1].is_file()]

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> dict:
        image_path, label_path = self.pairs[index]
        raw = read_label(label_path)
        label = raw
        if self.reduce_zero_label:
            label = raw - 1
            label[(raw == 0) | (raw == 255)] = self.ignore_index  # as mmseg: 255 stays ignored
        meta = {"index": index, "image_path": str(image_path), "label_path": str(label_path)}
        return self.make_sample(read_image(image_path), label, meta)
