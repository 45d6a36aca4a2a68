"""EXIF orientation: phone and camera photos store their pixels as the sensor saw them and record in
the EXIF ``Orientation`` tag (0x0112) how to turn them for display. Annotation tools (CVAT,
Labelme, Label Studio, Roboflow) draw labels on the displayed image, so segzoo reads images the same
way: :func:`segzoo.data.io.read_image` applies the tag with ``PIL.ImageOps.exif_transpose``. Label
maps are read as stored (annotation tools write them without the tag).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from PIL import Image

ORIENTATION_TAG = 0x0112
# what each EXIF orientation value asks for, to show the stored pixels
ORIENTATIONS = {
    1: "as stored", 2: "mirrored left-right", 3: "rotated 180 degrees", 4: "mirrored top-bottom",
    5: "transposed (mirrored and rotated 90 degrees)", 6: "rotated 90 degrees clockwise",
    7: "transversed (mirrored and rotated 90 degrees)", 8: "rotated 90 degrees counter-clockwise",
}
SWAPS_SIZE = (5, 6, 7, 8)  # orientations whose displayed image is W x H of the stored H x W


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8) of an opened image; 1 when there is none or it is invalid."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not stop reading the pixels
        return 1
    return value if value in ORIENTATIONS else 1


def file_orientation(path: str | os.PathLike) -> int:
    """:func:`orientation` of an image file (its header only); 1 when it cannot be read."""
    try:
        with Image.open(path) as im:
            return orientation(im)
    except (OSError, ValueError, SyntaxError):
        return 1


def mismatch_hint(image_path: str | os.PathLike, label_shape: Sequence[int], image_shape: Sequence[int]) -> str:
    """A sentence explaining a label/image size mismatch by the image's EXIF orientation, or ``""``
    when the orientation does not explain it (the label has the stored, unturned image's size)."""
    if not image_path or len(label_shape) != 2 or tuple(label_shape) != tuple(image_shape)[::-1]:
        return ""
    value = file_orientation(image_path)
    if value not in SWAPS_SIZE:
        return ""
    return (f"; the image has EXIF orientation {value} ({ORIENTATIONS[value]}), which segzoo applies "
            "as annotation tools do, and the label fits the stored, unturned pixels: turn the label the "
            "same way, or remove the tag from the image if the label is right")
