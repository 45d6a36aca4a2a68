"""Box and mask heads beyond torchvision's (its ``TwoMLPHead``, ``FastRCNNPredictor``,
``MaskRCNNHeads`` and ``MaskRCNNPredictor`` are used as they are).

* :class:`Res5BoxHead`: the C4 variant's box head (Mask R-CNN Fig. 4 left; Faster R-CNN with
  ResNet): the ResNet's conv5 stage (``layer4``, stride 2) on 14x14 RoI features -> 7x7x2048,
  average pooled. Its 7x7 map also feeds the C4 mask branch (deconv to 14x14).
* :class:`MLPMaskHead` + :class:`MLPMaskPredictor`: the paper's MLP mask-head ablation (Table 2e:
  fc 1024 -> fc 1024 -> K x 28 x 28 instead of the FCN).
"""

from __future__ import annotations

from torch import Tensor, nn


class Res5BoxHead(nn.Module):
    """ResNet conv5 as the RoI head: ``trunk(x)`` (N, C4, 14, 14) -> (N, C5, 7, 7); ``forward(x)``
    adds global average pooling -> (N, C5). ``res5`` keeps torchvision's block names."""

    def __init__(self, res5: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.res5 = res5
        self.out_channels = out_channels

    def trunk(self, x: Tensor) -> Tensor:
        return self.res5(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.trunk(x).mean((2, 3))


class MLPMaskHead(nn.Sequential):
    """Flatten the (N, C, R, R) RoI features, then two fc layers + ReLU: (N, hidden)."""

    def __init__(self, in_channels: int, resolution: int, hidden: int = 1024) -> None:
        super().__init__(nn.Flatten(1), nn.Linear(in_channels * resolution * resolution, hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, hidden), nn.ReLU(inplace=True))


class MLPMaskPredictor(nn.Module):
    """fc hidden -> K x M x M mask logits, reshaped to (N, K, M, M)."""

    def __init__(self, hidden: int, num_mask_classes: int, resolution: int) -> None:
        super().__init__()
        self.num_mask_classes, self.resolution = num_mask_classes, resolution
        self.mask_fc_logits = nn.Linear(hidden, num_mask_classes * resolution * resolution)

    def forward(self, x: Tensor) -> Tensor:
        m = self.resolution
        return self.mask_fc_logits(x).view(-1, self.num_mask_classes, m, m)
