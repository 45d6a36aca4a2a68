"""Grey values of 8-, 16-, 32-bit and float single-channel images -> the 8-bit values models see.

One mapping per dataset, the same for every image (never each image's own maximum):

* **default, by bit depth**: 8-bit as stored; 16-bit ``round(value / 65535 * 255)`` (= value / 257);
  32-bit integer images (Pillow mode ``I``) are taken as 16-bit values; float images
  ``round(value * 255)``, i.e. float data in [0, 1] (scikit-image's convention). Values outside that
  range (negative, above 65535, float outside [0, 1]) raise :class:`~segzoo.errors.DataError`
  naming the file: the bit depth alone cannot say how to show them.
* ``image_range: [lo, hi]``: ``lo`` -> 0, ``hi`` -> 255, linear, clipped, for every image (a fixed
  display range, as ImageJ/Fiji's; e.g. ``[0, 4095]`` for a 12-bit camera stored in 16-bit files).
* ``image_percentiles: [p_lo, p_hi]``: each image's ``p_lo``-th and ``p_hi``-th percentiles -> 0
  and 255, clipped (the per-image normalisation of CSBDeep/StarDist and Cellpose, e.g. ``[1, 99.8]``).

The two options apply to every single-channel image (8-bit too); colour and palette images are read
as stored. Non-finite values (NaN, inf) always raise a DataError naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segzoo.errors import DataError

GREY_MODES = {"L": "8-bit grey", "I;16": "16-bit grey", "I;16B": "16-bit grey", "I;16L": "16-bit grey",
              "I;16N": "16-bit grey", "I": "32-bit integer grey", "F": "float grey"}


def stored_kind(mode: str) -> str:
    """A readable name of how a Pillow image mode stores its values (``"16-bit grey"``, ...)."""
    return GREY_MODES.get(mode, f"8-bit {mode}")


@dataclass(frozen=True)
class GreyMapping:
    """How single-channel images become uint8 (see the module docstring).

    Args:
        value_range: ``(lo, hi)`` stored values mapped to 0 and 255; None: by bit depth.
        percentiles: ``(p_lo, p_hi)`` per-image percentiles mapped to 0 and 255.
    """

    value_range: tuple[float, float] | None = None
    percentiles: tuple[float, float] | None = None

    @classmethod
    def from_options(cls, image_range: Sequence[float] | None = None,
                     image_percentiles: Sequence[float] | None = None) -> GreyMapping:
        """Check the dataset options ``image_range`` / ``image_percentiles``.

        Raises:
            ValueError: both given, not two numbers, or not increasing (percentiles within 0..100).
        """
        if image_range is not None and image_percentiles is not None:
            raise ValueError("set image_range or image_percentiles, not both")
        value_range = percentiles = None
        if image_range is not None:
            value_range = _pair("image_range", image_range)
        if image_percentiles is not None:
            percentiles = _pair("image_percentiles", image_percentiles)
            if not 0 <= percentiles[0] < percentiles[1] <= 100:
                raise ValueError(f"image_percentiles must satisfy 0 <= low < high <= 100, got {list(image_percentiles)}")
        return cls(value_range, percentiles)

    @classmethod
    def from_config(cls, dataset_kwargs: dict) -> GreyMapping:
        """The mapping set by a dataset config's ``image_range`` / ``image_percentiles`` keys (for
        reading other images, e.g. in prediction, the way that dataset reads its own)."""
        return cls.from_options(dataset_kwargs.get("image_range"), dataset_kwargs.get("image_percentiles"))

    def describe(self, mode: str = "I;16") -> str:
        """The mapping applied to an image of Pillow mode ``mode``, in words."""
        if mode not in GREY_MODES:
            return "as stored"
        if self.value_range is not None:
            return f"image_range {self.value_range[0]:g}..{self.value_range[1]:g} -> 0..255"
        if self.percentiles is not None:
            return f"image_percentiles {self.percentiles[0]:g}..{self.percentiles[1]:g} -> 0..255 per image"
        return {"L": "as stored", "I": "value / 65535 * 255", "F": "value * 255"}.get(mode, "value / 65535 * 255")

    def to_uint8(self, arr: np.ndarray, mode: str, path: str | os.PathLike) -> np.ndarray:
        """(H, W) stored values of a single-channel image -> (H, W) uint8.

        Raises:
            DataError: non-finite values, or (default mapping) values outside the bit depth's range.
        """
        if arr.dtype.kind == "f":
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            if bad:
                raise DataError(f"image {path} has {bad} non-finite value(s) (NaN or inf); replace them "
                                "(e.g. by 0) or remove the image from the dataset")
        if self.value_range is not None:
            lo, hi = self.value_range
        elif self.percentiles is not None:
            lo, hi = (float(v) for v in np.percentile(arr, self.percentiles))
            if hi <= lo:  # a flat image
                return np.zeros(arr.shape, np.uint8)
        elif mode == "L":
            return np.asarray(arr, np.uint8)
        else:
            lo, hi = 0.0, (1.0 if mode == "F" else 65535.0)
            a_lo, a_hi = (float(v) for v in (arr.min(), arr.max())) if arr.size else (0.0, 0.0)
            if a_lo < lo or a_hi > hi:
                expected = "0..1 (float)" if mode == "F" else "0..65535 (16-bit)"
                raise DataError(
                    f"image {path} ({stored_kind(mode)}) holds values {a_lo:g}..{a_hi:g}, outside the "
                    f"{expected} that the default mapping by bit depth expects; set image_range: "
                    "[low, high] on the dataset (one mapping for every image) or image_percentiles: "
                    "[1, 99.8] (normalised per image)")
        scaled = (arr.astype(np.float64) - lo) * (255.0 / (hi - lo))
        return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)


def _pair(name: str, value: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers [low, high], got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be two finite numbers with low < high, got {list(value)}")
    return lo, hi
