"""The backbone contract shared by every architecture in the zoo."""

from __future__ import annotations

from torch import Tensor, nn


class Backbone(nn.Module):
    """A multi-scale feature extractor.

    ``forward(images)`` takes (B, 3, H, W) float images (normalised as the dataset pipeline does,
    ImageNet mean/std by default) and returns a list of feature maps ordered by increasing stride:
    ``features[i]`` has shape (B, out_channels[i], ~H / out_strides[i], ~W / out_strides[i])
    (odd sizes round down at max-pools and up at padded strided convs: VGG gives floor sizes,
    ResNet ceil sizes; the U-Net encoder with "valid" padding is smaller still). Strides are the
    effective ones: a dilated stage repeats the previous stride (ResNet at output stride 8:
    (2, 4, 8, 8, 8)).

    Subclasses set ``out_channels`` and ``out_strides`` (tuples of equal length).
    """

    out_channels: tuple[int, ...]
    out_strides: tuple[int, ...]

    def forward(self, images: Tensor) -> list[Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError
