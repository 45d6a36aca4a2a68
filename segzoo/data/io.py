"""Reading images and label maps, with errors that name the file and say what to do."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from segzoo.data import problems
from segzoo.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as RGB.

    Returns:
        uint8 tensor (3, H, W), values 0..255. 16-bit grey images are scaled to 8 bits.

    Raises:
        DataError: the file is missing or cannot be decoded (corrupt, truncated, not an image).
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I", "F"):
                arr = np.asarray(im, dtype=np.float32)
                hi = float(arr.max()) or 1.0
                im = Image.fromarray((arr * (255.0 / hi)).clip(0, 255).astype(np.uint8))
            arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(problems.missing_file("image", path)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(problems.unreadable("image", path, exc)) from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def read_label(path: str | os.PathLike) -> torch.Tensor:
    """Read a single-channel label map (class index per pixel; 'L', 'P' or 16-bit PNG).

    Returns:
        int64 tensor (H, W) of the stored values (no remapping).

    Raises:
        DataError: missing/corrupt file, or a colour (RGB) label image.
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
    return torch.from_numpy(arr.astype(np.int64))
