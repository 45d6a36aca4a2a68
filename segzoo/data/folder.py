"""``folder``: any dataset stored as an image folder plus a label folder with matching names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from segzoo.data import problems
from segzoo.data.base import SegDataset, apply_label_map
from segzoo.data.io import IMAGE_EXTENSIONS, read_image, read_label
from segzoo.data.paths import resolve_data_path
from segzoo.errors import DataError
from segzoo.registry import DATASETS


@DATASETS.register("folder", task="semantic")
class FolderDataset(SegDataset):
    """Pairs ``root/img_dir/<name>.<image ext>`` with ``root/ann_dir/<name><seg_suffix>``.

    Args:
        root: dataset folder (relative paths are looked up under the shared data folder too).
        img_dir, ann_dir: sub-folders of images and of single-channel label PNGs.
        class_names: one name per class; ``num_classes = len(class_names)``.
        seg_suffix: label file name ending (e.g. ``".png"``, ``"_mask.png"``).
        split_file: optional text file (relative to ``root``) of image names (stems) to use.
        label_map: stored value -> training value, e.g. ``{0: 255}`` to ignore a void class.
        palette: RGB colour per class (default: the VOC palette).
        ignore_index: label value excluded from loss and metrics.

    Raises:
        DataError: missing folders, no images, or images without a label (names them).
    """

    def __init__(
        self,
        *,
        root: str,
        class_names: Sequence[str],
        img_dir: str = "images",
        ann_dir: str = "labels",
        seg_suffix: str = ".png",
        split_file: str | None = None,
        label_map: dict[int, int] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
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
        self.pairs = image_label_pairs(self.root, img_dir, ann_dir, seg_suffix, split_file)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> dict:
        image_path, label_path = self.pairs[index]
        label = apply_label_map(read_label(label_path), self.label_map)
        meta = {"index": index, "image_path": str(image_path), "label_path": str(label_path)}
        return self.make_sample(read_image(image_path), label, meta)


__all__ = ["FolderDataset"]


def image_label_pairs(root: Path, img_dir: str, ann_dir: str, seg_suffix: str,
                      split_file: str | None) -> list[tuple[Path, Path]]:
    """(image, label) paths pairing ``root/img_dir/<name>.<image ext>`` with
    ``root/ann_dir/<name><seg_suffix>``, sorted by name, restricted to the names listed in
    ``split_file`` (one stem per line, relative to ``root``) when given.

    Raises:
        DataError: a missing folder, a split file naming unknown images, no images; images without a
            label raise too, except under ``segzoo data check``, which records them and goes on with
            the complete pairs.
    """
    img_root, ann_root = root / img_dir, root / ann_dir
    for d in (img_root, ann_root):
        if not d.is_dir():
            raise DataError(problems.missing_folder(d, "check root/img_dir/ann_dir"))
    images = {p.stem: p for p in sorted(img_root.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}
    if split_file is not None:
        names = [n.strip() for n in (root / split_file).read_text().splitlines() if n.strip()]
        unknown = [n for n in names if n not in images]
        if unknown:
            raise DataError(f"{split_file} names images not in {img_root}: {unknown[:5]}")
        images = {n: images[n] for n in names}
    if not images:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {img_root}")
    pairs = [(p, ann_root / f"{stem}{seg_suffix}") for stem, p in images.items()]
    missing = [str(lbl) for _, lbl in pairs if not lbl.is_file()]
    if missing:
        problems.report(problems.missing_pairs(img_root, ann_root, missing),
                        kind="missing_pairs", count=len(missing))
        pairs = [(img, lbl) for img, lbl in pairs if lbl.is_file()]
    return pairs
