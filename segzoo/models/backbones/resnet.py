"""ResNet-18/34/50/101 (He et al., CVPR 2016) as dilatable backbones, torchvision layout.

Modules keep torchvision's names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so an ImageNet
checkpoint of ``torchvision.models.resnet50`` loads unchanged (its ``fc.*`` keys are skipped).

Output stride (DeepLab v3 sec. 3.1; the "atrous" trick): ``output_stride=16`` replaces layer4's
stride 2 by dilation 2, ``output_stride=8`` also layer3's (dilations 2 and 4), exactly as
torchvision's ``replace_stride_with_dilation`` does it: the first unit of a dilated layer keeps the
previous dilation, the others take the new one. Unlike torchvision, this also works for the
BasicBlock ResNets (18/34). ``multi_grid`` (DeepLab v3 sec. 3.2) sets layer4's unit rates to
``dilation * multi_grid[i]``, e.g. (1, 2, 4) at OS 16 gives rates (2, 4, 8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from segzoo.models.backbones.base import Backbone
from segzoo.models.weights import load_state_dict, load_weights
from segzoo.registry import BACKBONES

OutputStride = Literal[8, 16, 32]


def _set_3x3_dilation(conv: nn.Conv2d, dilation: int) -> None:
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation, dilation)


def _block_3x3s(block: nn.Module) -> list[nn.Conv2d]:
    if isinstance(block, Bottleneck):
        return [block.conv2]
    if isinstance(block, BasicBlock):
        return [block.conv1, block.conv2]
    raise TypeError(f"unsupported ResNet block {type(block).__name__}")


def _strided_convs(block: nn.Module) -> list[nn.Conv2d]:
    convs = [block.conv2 if isinstance(block, Bottleneck) else block.conv1]
    if block.downsample is not None:
        convs.append(block.downsample[0])
    return convs


def dilate_layer(layer: nn.Sequential, previous: int, dilation: int) -> None:
    """Turn a stride-2 ResNet layer into a stride-1 layer with atrous 3x3 convs, in place.

    The first unit keeps ``previous`` dilation and the others get ``dilation`` (torchvision's
    ``_make_layer(dilate=True)``).
    """
    for conv in _strided_convs(layer[0]):
        conv.stride = (1, 1)
    layer[0].stride = 1
    for i, block in enumerate(layer):
        for conv in _block_3x3s(block):
            _set_3x3_dilation(conv, previous if i == 0 else dilation)


class ResNetBackbone(Backbone):
    """ResNet feature extractor.

    Output: 5 maps, the stem (after conv1, stride 2, 64 channels) and layer1 ... layer4, with
    channels (64, 256, 512, 1024, 2048) for ResNet-50/101, (64, 64, 128, 256, 512) for 18/34, and
    strides (2, 4, 8, 16, 32) at ``output_stride=32``, (2, 4, 8, 16, 16) at 16, (2, 4, 8, 8, 8)
    at 8 (sizes round up at each strided conv: a 97x131 input gives a 13x17 map at stride 8).

    Args:
        net: a torchvision ResNet (its ``avgpool`` and ``fc`` are dropped).
        output_stride: 8, 16 or 32.
        multi_grid: layer4 unit rates relative to its dilation (DeepLab v3); one per unit.
        weights: path or URL of a torchvision ResNet state dict (``fc.*`` is ignored).

    Raises:
        ValueError: an unsupported ``output_stride`` or a ``multi_grid`` whose length is not
            layer4's number of units.
        WeightsError: weights that do not fit (missing keys or shape mismatches listed).
    """

    def __init__(
        self,
        net: torchvision.models.ResNet,
        *,
        output_stride: int = 32,
        multi_grid: Sequence[int] | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"ResNet output_stride must be 8, 16 or 32, got {output_stride}")
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        dilation = 1
        for layer, dilate in ((self.layer3, output_stride == 8), (self.layer4, output_stride <= 16)):
            if dilate:
                dilate_layer(layer, dilation, dilation * 2)
                dilation *= 2
        if multi_grid is not None:
            multi_grid = tuple(int(g) for g in multi_grid)
            if len(multi_grid) != len(self.layer4) or min(multi_grid) < 1:
                raise ValueError(
                    f"multi_grid needs one positive rate per layer4 unit ({len(self.layer4)} here), "
                    f"got {multi_grid}"
                )
            for block, grid in zip(self.layer4, multi_grid):
                for conv in _block_3x3s(block):
                    _set_3x3_dilation(conv, dilation * grid)
        self.output_stride = output_stride
        self.multi_grid = multi_grid
        expansion = 4 if isinstance(self.layer1[0], Bottleneck) else 1
        self.out_channels = (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)
        self.out_strides = (2, 4, 8, min(16, output_stride), output_stride)
        if weights is not None:
            load_weights(self, load_state_dict(weights), source=str(weights))

    def forward(self, images: Tensor) -> list[Tensor]:
        stem = self.relu(self.bn1(self.conv1(images)))
        c1 = self.layer1(self.maxpool(stem))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [stem, c1, c2, c3, c4]


def _resnet(arch: str, weights: str | None, output_stride: int,
            multi_grid: Sequence[int] | None) -> ResNetBackbone:
    net = getattr(torchvision.models, arch)(weights=None)
    return ResNetBackbone(net, output_stride=output_stride, multi_grid=multi_grid, weights=weights)


_PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"


@BACKBONES.register("resnet18", paper=_PAPER)
def resnet18(*, weights: str | None = None, output_stride: OutputStride = 32,
             multi_grid: tuple[int, ...] | None = None) -> ResNetBackbone:
    """ResNet-18 (BasicBlock, 11.2M backbone parameters). Arguments: see :class:`ResNetBackbone`."""
    return _resnet("resnet18", weights, output_stride, multi_grid)


@BACKBONES.register("resnet34", paper=_PAPER)
def resnet34(*, weights: str | None = None, output_stride: OutputStride = 32,
             multi_grid: tuple[int, ...] | None = None) -> ResNetBackbone:
    """ResNet-34 (BasicBlock, 21.3M backbone parameters)."""
    return _resnet("resnet34", weights, output_stride, multi_grid)


@BACKBONES.register("resnet50", paper=_PAPER)
def resnet50(*, weights: str | None = None, output_stride: OutputStride = 32,
             multi_grid: tuple[int, ...] | None = None) -> ResNetBackbone:
    """ResNet-50 (Bottleneck, 23.5M backbone parameters)."""
    return _resnet("resnet50", weights, output_stride, multi_grid)


@BACKBONES.register("resnet101", paper=_PAPER)
def resnet101(*, weights: str | None = None, output_stride: OutputStride = 32,
              multi_grid: tuple[int, ...] | None = None) -> ResNetBackbone:
    """ResNet-101 (Bottleneck, 42.5M backbone parameters)."""
    return _resnet("resnet101", weights, output_stride, multi_grid)
