"""``segzoo data check``: scan a dataset split and report what it holds and what is wrong with it.

Every sample is loaded as training would load it (untransformed), with the problem messages of
:mod:`segzoo.data.problems` collected instead of raised: unreadable or missing files, images without
a label, labels whose size differs from their image's, label values outside [0, num_classes) that
are not ``ignore_index``. The report also gives the image/label counts, the image sizes, the pixel
frequency of every class, the stored and mapped (8-bit) value range of the images of each storage
kind (8-bit colour, 16-bit grey, float grey, ...; see :mod:`segzoo.data.intensity`) with a note when
high-bit-depth images use little of the 8-bit range, and how many images their EXIF orientation
turned.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from segzoo.data import problems
from segzoo.data.io import ValueRange, recording
from segzoo.errors import DataError


@dataclass
class SplitReport:
    """What :func:`check_dataset` found in one split."""

    split: str
    dataset: str = ""
    samples: int = 0  # image/label pairs the dataset lists
    images_without_label: int = 0
    loaded: int = 0  # samples whose image and label were read
    sizes: Counter = field(default_factory=Counter)  # (H, W) -> count
    class_names: Sequence[str] = ()
    class_pixels: list[int] = field(default_factory=list)
    ignored_pixels: int = 0
    problems: list[str] = field(default_factory=list)
    image_values: dict[tuple[str, str], ValueRange] = field(default_factory=dict)  # by (kind, mapping)
    exif_turned: int = 0  # images turned by their EXIF orientation

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        total = sum(self.class_pixels) + self.ignored_pixels
        return {
            "split": self.split, "dataset": self.dataset, "samples": self.samples,
            "images": self.samples + self.images_without_label, "labels": self.samples,
            "images_without_label": self.images_without_label, "loaded": self.loaded,
            "sizes": {f"{h}x{w}": n for (h, w), n in self.sizes.most_common()},
            "class_pixels": dict(zip(self.class_names, self.class_pixels)),
            "class_frequency": {n: (c / total if total else float("nan"))
                                for n, c in zip(self.class_names, self.class_pixels)},
            "ignored_pixels": self.ignored_pixels,
            "image_values": {kind: {"images": r.images, "min": _num(r.low), "max": _num(r.high), "mapping": how,
                                    "mapped_min": r.mapped_low, "mapped_max": r.mapped_high}
                             for (kind, how), r in self.image_values.items()},
            "exif_turned": self.exif_turned, "notes": self.notes(), "problems": list(self.problems),
        }

    def notes(self) -> list[str]:
        """Remarks that are not problems: high-bit-depth images left dark by the default mapping."""
        out = []
        for (kind, how), r in self.image_values.items():
            if kind != "8-bit colour" and how.startswith("value") and r.mapped_high < 64:
                out.append(f"{kind} images hold only {r.low:g}..{r.high:g} and become 8-bit "
                           f"{r.mapped_low}..{r.mapped_high} under the default mapping by bit depth ({how}); "
                           f"set image_range: [{r.low:g}, {r.high:g}] on the dataset (one mapping for every "
                           "image) or image_percentiles: [1, 99.8] (normalised per image)")
        return out

    def format(self) -> str:
        """A plain-text report."""
        d = self.to_dict()
        lines = [f"== {self.split}: {self.dataset} ==",
                 f"images {d['images']}, labels {d['labels']} ({self.images_without_label} images without a "
                 f"label); {self.loaded} of {self.samples} samples read"]
        if self.sizes:
            sizes = ", ".join(f"{k} ({v})" for k, v in list(d["sizes"].items())[:5])
            more = f" and {len(self.sizes) - 5} more" if len(self.sizes) > 5 else ""
            lines.append(f"sizes (H x W): {sizes}{more}")
        if self.image_values:
            parts = [f"{kind} {r.low:g}..{r.high:g} -> {r.mapped_low}..{r.mapped_high} "
                     f"({r.images} image{'s' if r.images > 1 else ''}, {how})"
                     for (kind, how), r in self.image_values.items()]
            lines.append(f"image values (stored -> 8-bit): {'; '.join(parts)}")
        if self.exif_turned:
            lines.append(f"{self.exif_turned} image(s) turned by their EXIF orientation (as annotation tools show them)")
        lines += [f"note: {n}" for n in self.notes()]
        total = sum(self.class_pixels) + self.ignored_pixels
        if total:
            freq = ", ".join(f"{n} {100 * c / total:.2f}%" for n, c in zip(self.class_names, self.class_pixels))
            lines.append(f"class pixels: {freq}; ignored {100 * self.ignored_pixels / total:.2f}%")
            absent = [n for n, c in zip(self.class_names, self.class_pixels) if c == 0]
            if absent:
                lines.append(f"classes with no pixel: {', '.join(absent)}")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems]
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def check_dataset(build: Callable[[], Any], split: str = "", *, max_images: int | None = None,
                  progress: bool = False) -> SplitReport:
    """Build a dataset with ``build()`` and scan it (see the module docstring).

    Args:
        build: returns the dataset (built inside the check, so construction problems such as
            images without labels are reported too).
        split: a name for the report.
        max_images: scan only the first N samples.
    """
    report = SplitReport(split)
    with problems.collecting() as found, recording() as images:
        try:
            ds = build()
        except DataError as exc:
            report.problems = [*found, str(exc)]
            return report
        report.dataset = type(ds).__name__
        report.class_names = list(ds.class_names)
        k = ds.num_classes
        counts = torch.zeros(k, dtype=torch.int64)
        n = len(ds) if max_images is None else min(len(ds), max_images)
        report.samples = len(ds)
        for i in tqdm(range(n), desc=f"check {split}", disable=not progress, dynamic_ncols=True):
            try:
                sample = ds.load(i)
            except DataError as exc:
                found.append(problems.Problem(str(exc)))
                continue
            report.loaded += 1
            report.sizes[tuple(int(s) for s in sample["image"].shape[-2:])] += 1
            label = sample["mask"].as_subclass(torch.Tensor).reshape(-1)
            report.ignored_pixels += int((label == ds.ignore_index).sum())
            valid = label[(label >= 0) & (label < k)]
            counts += torch.bincount(valid, minlength=k)
        report.class_pixels = counts.tolist()
    report.image_values, report.exif_turned = images.values, images.exif_turned
    report.images_without_label = sum(p.count for p in found if getattr(p, "kind", "") == "missing_pairs")
    report.problems = [str(p) for p in found]
    return report


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
