"""The semantic segmentor: backbone (-> neck) -> decode_head (+ auxiliary_head), mmsegmentation's
split. Built from config by :func:`segzoo.models.segmentors.compose.encoder_decoder`.

Forward contract shared by every semantic model of the zoo (docs/models.md):

* eval mode: ``model(images)`` with images (B, 3, H, W) float returns logits
  (B, num_classes, H, W) float at input resolution.
* training mode: ``model(images)`` returns ``dict[str, Tensor]``: ``"out"`` the main logits and,
  for models with an auxiliary head, ``"aux"``, each (B, num_classes, H, W). The engine weights each
  output's loss by ``model.loss_weights`` (e.g. ``{"out": 1.0, "aux": 0.4}`` for PSPNet).

Instance models (Mask R-CNN) follow torchvision's detection contract instead; ``model.task`` tells
the engine which one a model follows ("semantic" or "instance").
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from segzoo.models.backbones.base import Backbone
from segzoo.models.layers import resize


class EncoderDecoder(nn.Module):
    """backbone -> neck -> decode_head -> bilinear resize to the input size.

    Args:
        backbone: a :class:`~segzoo.models.backbones.base.Backbone`.
        decode_head: maps the (neck's or backbone's) feature list to logits (B, K, h, w).
        num_classes: K.
        neck: optional module mapping the backbone's feature list to another (a list, or a
            mapping whose values are taken in order, as torchvision's FPN returns).
        auxiliary_head: optional head used in training only (deep supervision).
        aux_loss_weight: loss weight of the auxiliary output.
        name: model name for messages (e.g. "fcn8s").

    Raises (on forward):
        ValueError: images that are not (B, 3, H, W) floats, or smaller than the model's
            ``min_input_size`` (the message says which sizes work).
    """

    task = "semantic"

    def __init__(
        self,
        backbone: Backbone,
        decode_head: nn.Module,
        *,
        num_classes: int,
        neck: nn.Module | None = None,
        auxiliary_head: nn.Module | None = None,
        aux_loss_weight: float = 0.4,
        name: str = "segmentor",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.decode_head = decode_head
        self.auxiliary_head = auxiliary_head
        self.num_classes = num_classes
        self.aux_loss_weight = aux_loss_weight
        self.name = name

    @property
    def loss_weights(self) -> dict[str, float]:
        """Loss weight of each training-mode output."""
        weights = {"out": 1.0}
        if self.auxiliary_head is not None:
            weights["aux"] = self.aux_loss_weight
        return weights

    @property
    def min_input_size(self) -> int:
        """Smallest H and W accepted: the backbone's largest stride (its coarsest map is >= 1x1)."""
        return max(self.backbone.out_strides)

    def check_input(self, images: Tensor) -> None:
        """Raise ``ValueError`` with a clear message if ``images`` cannot be segmented."""
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"{self.name} expects float images of shape (B, 3, H, W); got "
                f"{tuple(images.shape)} {images.dtype}"
            )
        h, w = images.shape[-2:]
        m = self.min_input_size
        if h < m or w < m:
            raise ValueError(
                f"{self.name} needs images of at least {m}x{m} pixels (any larger size works, "
                f"odd sizes included); got {h}x{w}"
            )

    def extract_features(self, images: Tensor) -> list[Tensor]:
        """The feature list the heads read: the backbone's, through the neck if there is one."""
        features = self.backbone(images)
        if self.neck is not None:
            features = self.neck(features)
            if isinstance(features, Mapping):
                features = list(features.values())
        return features

    def forward(self, images: Tensor) -> Tensor | dict[str, Tensor]:
        self.check_input(images)
        size = images.shape[-2:]
        features = self.extract_features(images)
        logits = resize(self.decode_head(features), size)
        if not self.training:
            return logits
        outputs = {"out": logits}
        if self.auxiliary_head is not None:
            outputs["aux"] = resize(self.auxiliary_head(features), size)
        return outputs
