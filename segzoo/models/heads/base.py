"""What every decode head shares: an input selection and a dropout + 1x1 classifier."""

from __future__ import annotations

from torch import Tensor, nn


class DecodeHead(nn.Module):
    """Base of the heads mapping a backbone's feature list to logits (B, num_classes, h, w).

    Subclasses compute features of ``channels`` channels in :meth:`features` and the base applies
    ``dropout`` then ``conv_seg`` (1x1 conv -> ``num_classes``, initialised N(0, 0.01), bias 0).

    Args:
        channels: width of the features entering the classifier.
        num_classes: K.
        dropout: probability before the classifier (0 disables it).
        in_index: which backbone feature the head reads (negative counts from the deepest).
    """

    def __init__(self, channels: int, num_classes: int, *, dropout: float = 0.1, in_index: int = -1) -> None:
        super().__init__()
        self.in_index = in_index
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def features(self, inputs: list[Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, inputs: list[Tensor]) -> Tensor:
        return self.conv_seg(self.dropout(self.features(inputs)))
