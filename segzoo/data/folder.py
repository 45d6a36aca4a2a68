"""``folder``: any dataset stored as an image folder plus a label folder with matching names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from segzoo.data import problems
from segzoo.data.base import SegDataset, apply_label_map
from segzoo.data.intensity import GreyMapping
from segzoo.data.io import IMAGE_EXTENSIONS, read_image, read_label
from segzoo.data.voc import read_name_list
from segzoo.errors import DataError
from segzoo.paths import resolve_data_path
from segzoo.registry import DATASETS


@DATASETS.register("folder", task="semantic")
class FolderDataset(SegDataset):
    """Pairs ``root/img_dir/<name><img_suffix>`` with ``root/ann_dir/<name><seg_suffix>``.

    Args:
        root: dataset folder (relative paths are looked up under the shared data folder too).
        img_dir, ann_dir: folders of images and of single-channel label PNGs, relative to ``root``
            (e.g. ``train/images`` and ``train/masks``; absolute paths are taken as they are).
        class_names: one name per class; ``num_classes = len(class_names)``.
        img_suffix: image file name ending (e.g. ``"_sat.jpg"``); None: any image extension
            (``.jpg .jpeg .png .bmp .tif .tiff .webp``, any case).
        seg_suffix: label file name ending (e.g. ``".png"``, ``"_mask.png"``).
        split_file: optional text file (relative to ``root``) of image names to use, one per line.
        label_map: stored value -> training value, e.g. ``{0: 255}`` to ignore a void class.
        palette: RGB colour per class (default: the VOC palette).
        image_range, image_percentiles: how single-channel 8/16/32-bit and float images map to
            8 bits (see :mod:`segzoo.data.intensity`; default: by bit depth).
        ignore_index: label value excluded from loss and metrics.

    Raises:
        DataError: missing folders or split file, an empty split file, no images, two images with
            one name (``x.png`` and ``x.jpg``), or images without a label (names them).
        ValueError: a palette of the wrong length, bad ``image_range`` / ``image_percentiles``.
    """

    def __init__(
        self,
        *,
        root: str,
        class_names: Sequence[str],
        img_dir: str = "images",
        ann_dir: str = "labels",
        img_suffix: str | None = None,
        seg_suffix: str = ".png",
        split_file: str | None = None,
        label_map: dict[int, int] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        image_range: Sequence[float] | None = None,
        image_percentiles: Sequence[float] | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(ignore_index=ignore_index)
        self.root = resolve_data_path(root)
        self.class_names = tuple(class_names)
        if palette is not None:
            if len(palette) != len(self.class_names):
                raise ValueError(f"palette has {len(palette)} colours for {len(class_names)} classes")
            self.palette = [tuple(int(v) for v in c) for c in palette]
        self.label_map = {int(k): int(v) for k, v in (label_map or {}).items()}
        self.grey = GreyMapping.from_options(image_range, image_percentiles)
        self.pairs = image_label_pairs(self.root, img_dir, ann_dir, seg_suffix, split_file, img_suffix)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> dict:
        image_path, label_path = self.pairs[index]
        label = apply_label_map(read_label(label_path), self.label_map)
        meta = {"index": index, "image_path": str(image_path), "label_path": str(label_path)}
        return self.make_sample(read_image(image_path, self.grey), label, meta)


__all__ = ["FolderDataset"]


def image_label_pairs(root: Path, img_dir: str, ann_dir: str, seg_suffix: str, split_file: str | None,
                      img_suffix: str | None = None) -> list[tuple[Path, Path]]:
    """(image, label) paths pairing ``root/img_dir/<name><img_suffix>`` (any image extension when
    ``img_suffix`` is None) with ``root/ann_dir/<name><seg_suffix>``, sorted by name, restricted to
    the names listed in ``split_file`` (one per line, relative to ``root``) when given.

    Raises:
        DataError: a missing folder or split file, an empty split file or one naming unknown images,
            no images, two images of one name (``x.png`` and ``x.jpg``: which one the label belongs
            to is unknown); images without a label raise too, except under ``segzoo data check``,
            which records them (and the duplicate names) and goes on with the complete pairs.
    """
    img_root, ann_root = root / img_dir, root / ann_dir
    for d in (img_root, ann_root):
        if not d.is_dir():
            raise DataError(problems.missing_folder(d, "check root/img_dir/ann_dir"))
    found: dict[str, list[Path]] = {}
    for p in sorted(img_root.iterdir()):
        if img_suffix is None:
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                found.setdefault(p.stem, []).append(p)
        elif p.name.endswith(img_suffix) and len(p.name) > len(img_suffix) and p.is_file():
            found.setdefault(p.name[: -len(img_suffix)], []).append(p)
    if split_file is not None:
        names = read_name_list(root / split_file, "split_file is relative to the dataset root")
        by_file = {p.name: stem for stem, paths in found.items() for p in paths}
        names = [by_file.get(n, n) if n not in found else n for n in names]  # "x.png" names x too
        unknown = [n for n in names if n not in found]
        if unknown:
            raise DataError(f"split file {root / split_file} names {len(unknown)} image(s) not in {img_root}: "
                            f"{unknown[:5]}; list image names without folder or extension")
        found = {n: found[n] for n in names}
    if not found:
        wanted = f"*{img_suffix}" if img_suffix else ", ".join(IMAGE_EXTENSIONS)
        raise DataError(f"no images ({wanted}) found in {img_root}")
    duplicates = {stem: paths for stem, paths in found.items() if len(paths) > 1}
    if duplicates:
        problems.report(problems.duplicate_names(duplicates), kind="duplicate_names")
    images = {stem: paths[0] for stem, paths in found.items() if len(paths) == 1}
    pairs = [(p, ann_root / f"{stem}{seg_suffix}") for stem, p in images.items()]
    missing = [str(lbl) for _, lbl in pairs if not lbl.is_file()]
    if missing:
        problems.report(problems.missing_pairs(img_root, ann_root, missing),
                        kind="missing_pairs", count=len(missing))
        pairs = [(img, lbl) for img, lbl in pairs if lbl.is_file()]
    return pairs
