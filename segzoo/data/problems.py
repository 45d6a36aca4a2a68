"""Data problems: one message per kind of bad data, shared by loading and ``segzoo data check``.

Datasets call :func:`report` with a message built here. Normally it raises
:class:`~segzoo.errors.DataError` (training refuses the data at once, naming the file); inside
:func:`collecting` (what ``segzoo data check`` does) it records the message and lets the scan go on,
so one run lists every problem. Problems that leave nothing to go on with (an unreadable file)
always raise; the check catches those and records the same message.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Sequence

from segzoo.data import exif
from segzoo.errors import DataError


class Problem(str):
    """A problem message (a ``str``) with its ``kind`` and the number of files it concerns."""

    kind: str = "problem"
    count: int = 1


_collector: contextvars.ContextVar[list[Problem] | None] = contextvars.ContextVar("segzoo_problems", default=None)


def report(message: str, *, kind: str = "problem", count: int = 1) -> None:
    """Raise ``DataError(message)``, or record it while :func:`collecting`."""
    problems = _collector.get()
    if problems is None:
        raise DataError(message)
    problem = Problem(message)
    problem.kind, problem.count = kind, count
    problems.append(problem)


@contextlib.contextmanager
def collecting() -> Iterator[list[Problem]]:
    """Within the block, :func:`report` appends to the yielded list instead of raising."""
    problems: list[Problem] = []
    token = _collector.set(problems)
    try:
        yield problems
    finally:
        _collector.reset(token)


# ----------------------------------------------------------------------------- the messages
def missing_file(kind: str, path: str | os.PathLike) -> str:
    """A listed image/label file that is not there."""
    return f"{kind} file {path} does not exist; check the dataset root and list"


def unreadable(kind: str, path: str | os.PathLike, error: object) -> str:
    """An image or label file that cannot be decoded."""
    extra = ": replace it or remove it from the dataset" if kind == "image" else ""
    return f"cannot read {kind} {path} ({error}); the file may be corrupt{extra}"


def colour_label(path: str | os.PathLike, mode: str) -> str:
    """An RGB(A) image where a class-index map is expected."""
    return (f"label {path} is a colour ({mode}) image; segzoo expects single-channel class-index "
            "maps ('L' or palette 'P' PNGs): convert it with the dataset palette")


def multichannel_label(path: str | os.PathLike, mode: str) -> str:
    """A label image with more than one channel (grey + alpha, palette + alpha, CMYK, ...)."""
    what = {"LA": "grey + alpha (LA)", "La": "grey + alpha (La)", "PA": "palette + alpha (PA)"}.get(mode, mode)
    fix = "save it without the alpha channel" if "A" in mode.upper() else "convert it"
    return (f"label {path} is a {what} image; a label must be a single-channel class-index map "
            f"('L', palette 'P' or 16-bit PNG): {fix}")


def size_mismatch(label: str, label_shape: Sequence[int], image: str, image_shape: Sequence[int]) -> str:
    """A label whose size differs from its image's (saying so when the image's EXIF orientation
    explains it, see :mod:`segzoo.data.exif`)."""
    return (f"label {label} is {tuple(label_shape)} (H, W) but its image {image} is "
            f"{tuple(image_shape)}; labels must match their image's size"
            f"{exif.mismatch_hint(image, label_shape, image_shape)}")


def bad_values(label: str, values: Sequence[int], num_classes: int, ignore_index: int) -> str:
    """Label values outside [0, num_classes) that are not ignore_index."""
    return (f"label {label} has values {list(values)} outside [0, {num_classes}) that are not "
            f"ignore_index={ignore_index}; fix the file, map them with label_map, or set "
            "data.ignore_index")


def missing_pairs(images: str | os.PathLike, labels: str | os.PathLike, missing: Sequence[str],
                  hint: str = "add the labels or list only labelled images in split_file") -> str:
    """Images without a label file (every one is named)."""
    return (f"{len(missing)} image(s) in {images} have no label in {labels}: "
            f"{', '.join(str(m) for m in missing)}; {hint}")


def duplicate_names(duplicates: dict[str, Sequence[str | os.PathLike]]) -> str:
    """Images that share a name (``x.png`` and ``x.jpg``): labels are paired by name."""
    listed = "; ".join(" and ".join(str(p) for p in paths) for paths in list(duplicates.values())[:10])
    more = f" (and {len(duplicates) - 10} more names)" if len(duplicates) > 10 else ""
    return (f"{len(duplicates)} image name(s) are used by more than one file: {listed}{more}; labels are "
            "paired with images by name, so keep one file per name (remove or rename the others)")


def missing_folder(path: str | os.PathLike, hint: str) -> str:
    """A dataset folder that does not exist."""
    return f"folder {path} does not exist; {hint}"
