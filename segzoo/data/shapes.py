"""``shapes``: a deterministic synthetic dataset generated on the fly (no files).

Each image holds 1..``max_shapes`` filled circles, squares and triangles of random size, colour and
rotation, drawn in order (later shapes occlude earlier ones) over a textured background (colour
gradient, sinusoidal stripes, pixel noise). Every sample has a semantic mask and per-instance
masks with classes, derived from the same instance map, so they always agree. Sample ``i`` of a
split depends only on ``(seed, split, i)``.

With ``keypoints: true`` every instance also carries K = 4 keypoints, the extreme points of its
outline (ExtremeNet's): ``top``, ``right``, ``bottom``, ``left`` (for squares and triangles the
vertices furthest up, right, down and left; for circles the four points at the radius). Visibility:
2 where the point's pixel (1.5 px inside the outline) belongs to the shape, 1 where a later shape
covers it (occluded), 0 outside the image; ``right`` and ``left`` swap in horizontal flips. The
option draws no extra random numbers: images and masks are those of ``keypoints: false``.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from segzoo.data.base import SegDataset
from segzoo.data.instances import instances_from_id_map
from segzoo.data.keypoints import add_keypoints, flip_index
from segzoo.registry import DATASETS

_SPLITS = {"train": 0, "val": 1, "test": 2}
_SIDES = {2: 4, 3: 3}  # class -> polygon sides (square, triangle); class 1 is a circle


@DATASETS.register("shapes", task="semantic+instance")
class ShapesDataset(SegDataset):
    """Synthetic shapes: classes 0 background, 1 circle, 2 square, 3 triangle.

    Args:
        split: "train", "val" or "test" (independent streams of images).
        num_images: dataset length (default 256 for train, 64 otherwise).
        size: (H, W) of every image, in pixels.
        min_shapes, max_shapes: number of shapes drawn per image (inclusive range).
        min_area: shapes whose visible area (after occlusion) is below this many pixels are
            removed, so every instance is at least this large.
        seed: base seed; the same arguments give the same images on every machine.
        with_instances: also return ``"instances"`` (boxes, masks, labels) in each sample.
        keypoints: also give each instance its 4 extreme points (see the module docstring);
            implies ``with_instances``.
        keypoint_sigma: the OKS sigma of every keypoint for keypoint AP (``keypoint_sigmas``).
        ignore_index: kept for the common dataset interface (shapes has no void pixels).
    """

    class_names = ("background", "circle", "square", "triangle")
    palette = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200))
    keypoint_names = ("top", "right", "bottom", "left")
    skeleton = ((0, 1), (1, 2), (2, 3), (3, 0))

    def __init__(
        self,
        *,
        split: str = "train",
        num_images: int | None = None,
        size: tuple[int, int] = (64, 64),
        min_shapes: int = 1,
        max_shapes: int = 4,
        min_area: int = 16,
        seed: int = 0,
        with_instances: bool = False,
        keypoints: bool = False,
        keypoint_sigma: float = 0.05,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(ignore_index=ignore_index)
        if split not in _SPLITS:
            raise ValueError(f"shapes split must be one of {list(_SPLITS)}, got {split!r}")
        if not 1 <= min_shapes <= max_shapes:
            raise ValueError(f"need 1 <= min_shapes <= max_shapes, got {min_shapes}, {max_shapes}")
        self.split = split
        self.num_images = num_images if num_images is not None else (256 if split == "train" else 64)
        self.size = (int(size[0]), int(size[1]))
        self.min_shapes, self.max_shapes = min_shapes, max_shapes
        self.min_area = min_area
        self.seed = seed
        self.with_instances = with_instances or keypoints
        self.keypoints = keypoints
        if keypoints:  # the keypoint datasets' interface (segzoo.data.keypoints)
            self.keypoint_flip = flip_index(self.keypoint_names)
            self.keypoint_sigmas = (float(keypoint_sigma),) * len(self.keypoint_names)

    def __len__(self) -> int:
        return self.num_images

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _SPLITS[self.split], index])

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        c0, c1 = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
        t = (xx * np.cos(a := rng.uniform(0, np.pi)) + yy * np.sin(a)) / max(h, w)
        img = c0 + (c1 - c0) * ((t - t.min()) / max(np.ptp(t), 1e-6))[..., None]
        theta, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
        stripes = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
        img += rng.uniform(10, 35) * stripes[..., None]
        img += rng.normal(0, 8, (h, w, 3))
        return img

    def _draw(self, shape: tuple) -> np.ndarray:
        cls, cx, cy, r, rot, _ = shape
        canvas = Image.new("L", (self.size[1], self.size[0]), 0)
        draw = ImageDraw.Draw(canvas)
        if cls == 1:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=1)
        else:
            draw.regular_polygon((cx, cy, r), _SIDES[cls], rotation=rot, fill=1)
        return np.asarray(canvas, dtype=bool)

    def _instance_map(self, shapes: list[tuple]) -> np.ndarray:
        inst = np.zeros(self.size, dtype=np.int64)
        for k, shape in enumerate(shapes, start=1):
            inst[self._draw(shape)] = k
        return inst

    def generate(self, index: int, *, return_shapes: bool = False):
        """Render sample ``index``: image (H, W, 3) uint8, instance map (H, W) int64 with ids
        1..N (0 = background), and the class of each instance id (list of N ints); with
        ``return_shapes`` also the N shapes' ``(class, cx, cy, r, rotation, colour)``."""
        rng = self._rng(index)
        h, w = self.size
        short = min(h, w)
        shapes = []
        for _ in range(int(rng.integers(self.min_shapes, self.max_shapes + 1))):
            cls = int(rng.integers(1, len(self.class_names)))
            r = rng.uniform(0.1, 0.25) * short
            cx, cy = rng.uniform(r * 0.5, w - r * 0.5), rng.uniform(r * 0.5, h - r * 0.5)
            shapes.append((cls, cx, cy, r, rng.uniform(0, 360), rng.uniform(0, 255, 3)))
        image = self._background(rng)
        while True:  # drop shapes left too small by occlusion, until every one is big enough
            inst = self._instance_map(shapes)
            areas = np.bincount(inst.ravel(), minlength=len(shapes) + 1)[1:]
            keep = [s for s, a in zip(shapes, areas) if a >= self.min_area]
            if len(keep) == len(shapes):
                break
            shapes = keep
        for k, shape in enumerate(shapes, start=1):
            m = inst == k
            image[m] = shape[5] + rng.normal(0, 6, (int(m.sum()), 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        if return_shapes:
            return image, inst, [s[0] for s in shapes], shapes
        return image, inst, [s[0] for s in shapes]

    def extreme_points(self, shape: tuple) -> np.ndarray:
        """(4, 2) float ``[x, y]`` of a shape's top, right, bottom and left extreme points."""
        cls, cx, cy, r, rot, _ = shape
        if cls == 1:
            pts = np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]])
            return pts
        n = _SIDES[cls]
        # PIL's regular_polygon: vertex k at (cx + r cos a_k, cy - r sin a_k), with
        # a_k = 270 - 180 / n + rotation + k * 360 / n degrees
        a = np.radians(270 - 180 / n + rot + 360 * np.arange(n) / n)
        verts = np.stack([cx + r * np.cos(a), cy - r * np.sin(a)], 1)
        return verts[[verts[:, 1].argmin(), verts[:, 0].argmax(), verts[:, 1].argmax(), verts[:, 0].argmin()]]

    def _keypoints(self, shapes: list[tuple], inst: np.ndarray) -> np.ndarray:
        """(N, 4, 3) ``[x, y, v]`` of every shape (visibility as in the module docstring)."""
        h, w = self.size
        out = np.zeros((len(shapes), 4, 3), dtype=np.float32)
        for k, shape in enumerate(shapes):
            pts = self.extreme_points(shape)
            centre = np.array(shape[1:3])
            d = centre - pts
            probe = pts + 1.5 * d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
            for j, ((x, y), (px, py)) in enumerate(zip(pts, probe)):
                if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
                    v = 0
                else:
                    ix, iy = int(np.clip(np.floor(px), 0, w - 1)), int(np.clip(np.floor(py), 0, h - 1))
                    v = 2 if inst[iy, ix] == k + 1 else 1
                out[k, j] = (x, y, v)
        return out

    def load(self, index: int) -> dict:
        image, inst, classes, shapes = self.generate(index, return_shapes=True)
        lut = np.array([0, *classes], dtype=np.int64)
        image_t = torch.from_numpy(image).permute(2, 0, 1).contiguous()
        meta = {"index": index, "image_path": f"shapes/{self.split}/{index}", "label_path": ""}
        sample = self.make_sample(image_t, torch.from_numpy(lut[inst]), meta)
        if self.with_instances:
            sample["instances"] = instances_from_map(torch.from_numpy(inst), classes)
        if self.keypoints:
            sample["instances"] = add_keypoints(sample["instances"], torch.from_numpy(self._keypoints(shapes, inst)),
                                                self.keypoint_flip)
        return sample


def instances_from_map(inst: torch.Tensor, classes: list[int]) -> dict:
    """Per-instance targets from an instance-id map (H, W) with ids 1..N (0 = background).

    Returns ``{"boxes": BoundingBoxes (N, 4) XYXY in pixel-edge coordinates (x2 = last column + 1),
    "masks": Mask (N, H, W) uint8, "labels": (N,) int64, "iscrowd": (N,) int64 zeros}``.
    """
    return instances_from_id_map(inst, {k: c for k, c in enumerate(classes, start=1)})
