"""Reading images and label maps, with errors that name the file and say what to do."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from segzoo.data import exif, problems
from segzoo.data.intensity import GREY_MODES, GreyMapping, stored_kind
from segzoo.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_MAPPING = GreyMapping()


@dataclass
class ValueRange:
    """Stored and mapped (8-bit) value ranges of the images of one storage kind and mapping."""

    images: int
    low: float
    high: float
    mapped_low: int
    mapped_high: int


@dataclass
class ImageRecord:
    """What :func:`recording` collects: value ranges by ``(stored kind, mapping)`` and the number of
    images turned by their EXIF orientation."""

    values: dict[tuple[str, str], ValueRange]
    exif_turned: int = 0


_recorder: contextvars.ContextVar[ImageRecord | None] = contextvars.ContextVar("segzoo_images", default=None)


@contextlib.contextmanager
def recording() -> Iterator[ImageRecord]:
    """Within the block, :func:`read_image` adds each image's value range to the yielded record
    (``segzoo data check`` reports them)."""
    record = ImageRecord({})
    token = _recorder.set(record)
    try:
        yield record
    finally:
        _recorder.reset(token)


def _record(record: ImageRecord, kind: str, mapping: str, stored: np.ndarray, mapped: np.ndarray) -> None:
    if not stored.size:
        return
    lo, hi, m_lo, m_hi = float(stored.min()), float(stored.max()), int(mapped.min()), int(mapped.max())
    r = record.values.get((kind, mapping))
    if r is None:
        record.values[(kind, mapping)] = ValueRange(1, lo, hi, m_lo, m_hi)
    else:
        r.images += 1
        r.low, r.high = min(r.low, lo), max(r.high, hi)
        r.mapped_low, r.mapped_high = min(r.mapped_low, m_lo), max(r.mapped_high, m_hi)


def read_image(path: str | os.PathLike, mapping: GreyMapping | None = None) -> torch.Tensor:
    """Read an image file as RGB, turned by its EXIF orientation (see :mod:`segzoo.data.exif`).

    Single-channel images (8-, 16-, 32-bit, float) are mapped to 8 bits by ``mapping`` (default:
    by bit depth, see :mod:`segzoo.data.intensity`) and repeated to 3 channels.

    Returns:
        uint8 tensor (3, H, W), values 0..255, H x W as displayed (after EXIF orientation).

    Raises:
        DataError: the file is missing or cannot be decoded (corrupt, truncated, not an image), has
            non-finite values, or values outside what the mapping expects (naming the file).
    """
    path = Path(path)
    mapping = mapping or DEFAULT_MAPPING
    record = _recorder.get()
    try:
        with Image.open(path) as im:
            im.load()
            turned = exif.orientation(im) != 1
            if turned:
                im = ImageOps.exif_transpose(im)
            mode = im.mode
            if mode in GREY_MODES:
                stored = np.asarray(im)
                grey = mapping.to_uint8(stored, mode, path)
                arr = np.repeat(grey[..., None], 3, axis=2)
            else:
                arr = stored = np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(problems.missing_file("image", path)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(problems.unreadable("image", path, exc)) from None
    if record is not None:
        record.exif_turned += int(turned)
        _record(record, stored_kind(mode) if mode in GREY_MODES else "8-bit colour",
                mapping.describe(mode), stored, arr)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def read_label(path: str | os.PathLike) -> torch.Tensor:
    """Read a single-channel label map (class index per pixel; 'L', 'P' or 16-bit PNG), as stored
    (no EXIF orientation: annotation tools write label maps without it).

    Returns:
        int64 tensor (H, W) of the stored values (no remapping).

    Raises:
        DataError: missing/corrupt file, a colour (RGB/RGBA) or other multi-channel label image
            (grey + alpha 'LA', palette + alpha 'PA'), or a float image with non-finite or
            fractional values.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(problems.missing_file("label", path)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(problems.unreadable("label", path, exc)) from None
    if mode in ("RGB", "RGBA"):
        raise DataError(problems.colour_label(path, mode))
    if arr.ndim != 2:
        raise DataError(problems.multichannel_label(path, mode))
    if arr.dtype.kind == "f":
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad or not np.array_equal(arr, np.round(arr)):
            what = f"{bad} non-finite value(s) (NaN or inf)" if bad else "fractional values"
            raise DataError(f"label {path} is a float image with {what}; a label holds whole class "
                            "indices: save it as an 8- or 16-bit PNG")
    return torch.from_numpy(arr.astype(np.int64))
