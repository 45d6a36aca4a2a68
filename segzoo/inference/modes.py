"""Semantic inference modes from the ``eval:`` config: whole image, sliding window, overlap-tile,
and test-time augmentation (horizontal flip, multi-scale).

``SemanticInferencer(model, mode="slide", crop_size=(512, 512), stride=(341, 341), flip=True,
scales=(0.75, 1.0, 1.25))(images)`` returns logits (B, K, H, W) at the input size:

* ``whole``: one forward pass of the batch (valid-padding models mirror-extend inside ``forward``);
* ``slide``: :func:`~segzoo.inference.tiling.slide_logits`, or for models that follow the
  valid-padding protocol (``output_size`` + ``forward_valid``)
  :func:`~segzoo.inference.tiling.overlap_tile_logits`, with ``crop_size`` the input tile;
* TTA: for each scale s the batch is resized (bilinear) to round(s * H) x round(s * W), predicted in
  the mode above, optionally also flipped left-right (the logits flipped back), and the logits are
  resized back to H x W; the result is the mean of the logits of all (scale, flip) passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segzoo.errors import ConfigError
from segzoo.inference.tiling import is_valid_padding, overlap_tile_logits, slide_logits

MODES = ("whole", "slide")


def _pair(v: int | Sequence[int] | None, name: str) -> tuple[int, int] | None:
    if v is None:
        return None
    if isinstance(v, int):
        return (v, v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or [H, W], got {v!r}")
    return (int(v[0]), int(v[1]))


class SemanticInferencer:
    """Logits of a semantic model under one inference setting (see the module docstring).

    Args:
        model: a semantic model in eval mode.
        mode: "whole" or "slide".
        crop_size: (H, W) window (slide); for valid-padding models the input tile.
        stride: (H, W) step between windows; default 2/3 of the crop (mmseg's usual ratio), or the
            output tile for valid-padding models.
        flip: also predict the left-right mirrored batch.
        scales: image scale factors.
        batch_size: windows per forward pass in slide mode.

    Raises:
        ValueError: unknown mode, slide without crop_size, non-positive scales.
    """

    def __init__(self, model: nn.Module, *, mode: str = "whole", crop_size: int | Sequence[int] | None = None,
                 stride: int | Sequence[int] | None = None, flip: bool = False,
                 scales: Sequence[float] = (1.0,), batch_size: int = 8) -> None:
        if mode not in MODES:
            raise ValueError(f"inference mode must be one of {MODES}, got {mode!r}")
        self.model = model
        self.mode = mode
        self.crop_size = _pair(crop_size, "crop_size")
        self.valid = is_valid_padding(model)
        if mode == "slide" and self.crop_size is None:
            raise ValueError("slide mode needs crop_size [H, W] (eval.crop_size)")
        stride = _pair(stride, "stride")
        if stride is None and self.crop_size is not None and not self.valid:
            stride = (max(1, self.crop_size[0] * 2 // 3), max(1, self.crop_size[1] * 2 // 3))
        self.stride = stride
        self.flip = flip
        self.scales = tuple(float(s) for s in scales) or (1.0,)
        if any(s <= 0 for s in self.scales):
            raise ValueError(f"TTA scales must be positive, got {list(self.scales)}")
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, model: nn.Module, eval_cfg: Any | None) -> SemanticInferencer:
        """From an ``EvalConfig`` (``cfg.eval``); None gives whole-image inference.

        Raises:
            ConfigError: inconsistent ``eval`` settings (the message names the key).
        """
        if eval_cfg is None:
            return cls(model)
        try:
            return cls(model, mode=eval_cfg.mode, crop_size=eval_cfg.crop_size, stride=eval_cfg.stride,
                       flip=eval_cfg.tta.flip, scales=eval_cfg.tta.scales, batch_size=eval_cfg.batch_size)
        except ValueError as exc:
            raise ConfigError(f"'eval': {exc}") from None

    def _single(self, images: Tensor) -> Tensor:
        if self.mode == "whole":
            out = self.model(images)
            if isinstance(out, dict):  # a model left in training mode by a wrapper
                out = out["out"]
            return out
        if self.valid:
            return overlap_tile_logits(self.model, images, self.crop_size, self.stride,
                                       batch_size=self.batch_size)
        return slide_logits(self.model, images, self.crop_size, self.stride, batch_size=self.batch_size)

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> Tensor:
        """Logits (B, K, H, W) for normalised images (B, 3, H, W)."""
        h, w = images.shape[-2:]
        total, n = None, 0
        for s in self.scales:
            x = images if s == 1.0 else F.interpolate(
                images, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear",
                align_corners=False)
            for flipped in ((False, True) if self.flip else (False,)):
                out = self._single(x.flip(-1) if flipped else x)
                if flipped:
                    out = out.flip(-1)
                if out.shape[-2:] != (h, w):
                    out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
                total = out if total is None else total + out
                n += 1
        return total / n

    def labels(self, images: Tensor) -> Tensor:
        """Argmax labels (B, H, W) int64."""
        return self(images).argmax(1)
