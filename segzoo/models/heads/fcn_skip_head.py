"""FCN decode head with skip fusion (Long, Shelhamer & Darrell, CVPR 2015, sec. 3-4).

fc6 (7x7 conv, 4096) and fc7 (1x1 conv, 4096), each ReLU + dropout 0.5, then ``score_fr``
(1x1 conv -> K). FCN-16s adds the stride-16 features (pool4 for VGG) through ``score_pool4``
(1x1 conv, zero-initialised) to the 2x-upsampled stride-32 score; FCN-8s also adds ``score_pool3``
at stride 8. The learnable 2x upsampling layers start as bilinear interpolation.

Padding choice (documented in docs/models.md): the modern variant. Convolutions are padded
("same"), fc6 too (padding 3), pooling floors, and each 2x upsampling is given the skip's exact
size (``ConvTranspose2d(output_size=...)``), so no crop offsets are needed and any input of at least
32x32 works. The paper's Caffe version padded conv1_1 by 100 and cropped instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from segzoo.models.heads.wiring import FeatureInfo, incompatible
from segzoo.models.layers import BilinearConvTranspose2d, resize
from segzoo.models.layers.exportable import conv_transpose_to_size
from segzoo.registry import HEADS


class FCNSkipHead(nn.Module):
    """Class scores at stride 32 (FCN-32s), 16 (FCN-16s) or 8 (FCN-8s).

    Args:
        in_channels: channels of the backbone features, ordered by increasing stride.
        in_strides: their strides.
        num_classes: K, number of output classes.
        num_skips: 0 (FCN-32s), 1 (FCN-16s: + features[-2]) or 2 (FCN-8s: + features[-3]).
        fc_channels: width of fc6/fc7 (4096 in the paper).
        fc_kernel_size: fc6 kernel size (7 in the paper; 1 or 3 for slim variants).
        dropout: dropout probability after fc6 and fc7 (0.5 in the paper).
        in_indices: the features read: (deepest, pool4, pool3), by default the last three.

    ``forward(features)`` returns logits (B, K, h, w) at the stride of the finest feature used.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        num_classes: int,
        *,
        num_skips: int = 2,
        fc_channels: int = 4096,
        fc_kernel_size: int = 7,
        dropout: float = 0.5,
        in_indices: Sequence[int] = (-1, -2, -3),
    ) -> None:
        super().__init__()
        if num_skips not in (0, 1, 2):
            raise ValueError(f"num_skips must be 0, 1 or 2 (FCN-32s/16s/8s), got {num_skips}")
        if len(in_channels) < num_skips + 1 or len(in_indices) < num_skips + 1:
            raise ValueError(f"FCN with {num_skips} skips needs {num_skips + 1} feature levels")
        self.num_skips = num_skips
        self.in_strides = tuple(in_strides)
        self.in_indices = tuple(int(i) for i in in_indices[:num_skips + 1])
        deep, *skips = self.in_indices
        self.fc6 = nn.Conv2d(in_channels[deep], fc_channels, fc_kernel_size, padding=fc_kernel_size // 2)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.drop7 = nn.Dropout(dropout)
        self.relu = nn.ReLU(inplace=True)
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
        for conv in (self.fc6, self.fc7):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        nn.init.normal_(self.score_fr.weight, std=0.01)
        nn.init.zeros_(self.score_fr.bias)
        if num_skips >= 1:
            self.upscore2 = self._upsampler(deep, skips[0], num_classes)
            self.score_pool4 = self._zero_conv(in_channels[skips[0]], num_classes)
        if num_skips >= 2:
            self.upscore_pool4 = self._upsampler(skips[0], skips[1], num_classes)
            self.score_pool3 = self._zero_conv(in_channels[skips[1]], num_classes)

    @property
    def output_stride(self) -> int:
        """Stride of the logits this head returns."""
        return self.in_strides[self.in_indices[-1]]

    def _upsampler(self, src: int, dst: int, num_classes: int) -> nn.Module | None:
        ratio = self.in_strides[src] // self.in_strides[dst]
        # learnable bilinear-initialised deconv for the paper's 2x steps; plain resize otherwise
        return BilinearConvTranspose2d(num_classes, ratio) if ratio >= 2 else None

    @staticmethod
    def _zero_conv(in_channels: int, num_classes: int) -> nn.Conv2d:
        conv = nn.Conv2d(in_channels, num_classes, 1)
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
        return conv

    @staticmethod
    def _fuse(score: Tensor, skip: Tensor, up: nn.Module | None) -> Tensor:
        """Upsample to the skip's size and add: the deconvolution given the skip's exact size where
        it can make it (``output_size``), else deconvolved and resized; decided per input as data
        (:func:`conv_transpose_to_size`) so an ONNX export serves every input size."""
        size = skip.shape[-2:]
        if up is not None:
            return conv_transpose_to_size(up, score, size) + skip
        return resize(score, size) + skip

    def forward(self, features: list[Tensor]) -> Tensor:
        deep, *skips = self.in_indices
        x = self.drop6(self.relu(self.fc6(features[deep])))
        x = self.drop7(self.relu(self.fc7(x)))
        score = self.score_fr(x)
        if self.num_skips >= 1:
            score = self._fuse(score, self.score_pool4(features[skips[0]]), self.upscore2)
        if self.num_skips >= 2:
            score = self._fuse(score, self.score_pool3(features[skips[1]]), self.upscore_pool4)
        return score


def vgg_classifier_to_fc(state: dict[str, Tensor], head: FCNSkipHead) -> dict[str, Tensor]:
    """Convolutionalise torchvision VGG ``classifier.0/3`` weights into ``fc6``/``fc7`` (FCN sec. 3.1).

    Returns the head state entries to load; empty if the state dict has no classifier or the head's
    fc6/fc7 shapes differ from VGG's (e.g. a slim head).
    """
    if "classifier.0.weight" not in state or "classifier.3.weight" not in state:
        return {}
    w6, w7 = head.fc6.weight, head.fc7.weight
    if state["classifier.0.weight"].shape != (w6.shape[0], w6[0].numel()):
        return {}
    fc6 = state["classifier.0.weight"].reshape(w6.shape)
    fc7 = state["classifier.3.weight"][:, :, None, None]
    if fc7.shape != w7.shape:
        return {}
    return {
        "fc6.weight": fc6,
        "fc6.bias": state["classifier.0.bias"],
        "fc7.weight": fc7,
        "fc7.bias": state["classifier.3.bias"],
    }


def skip_indices(features: FeatureInfo, num_skips: int, *, head: str = "fcn_skip_head") -> tuple[int, ...]:
    """The features FCN reads: the deepest, then pool4 (the last feature before it at stride <= 16)
    and pool3 (the last before pool4 at stride <= 8), the paper's strides 32, 16, 8 on VGG-16 and
    ResNets (on a dilated or shallower backbone, the finest levels below the deepest).

    Raises:
        ValueError: not enough levels for ``num_skips`` skips.
    """
    deep = len(features) - 1
    out = [deep]
    for want in (16, 8)[:num_skips]:
        i = features.last_at_most(want, before=out[-1])
        if i is None:
            raise incompatible(head, features, f"num_skips={num_skips} needs a skip feature at "
                               f"stride <= {want} below feature {out[-1]}",
                               "use fewer skips (num_skips: 0 is FCN-32s) or a backbone with "
                               "stride-16 and stride-8 levels")
        out.append(i)
    return tuple(out)


@HEADS.register("fcn_skip_head", paper="Long et al., CVPR 2015",
                reads="the deepest feature and the stride-16 / stride-8 ones (pool4, pool3)")
def fcn_skip_head(features: FeatureInfo, num_classes: int, /, *, num_skips: int = 2,
                  fc_channels: int = 4096, fc_kernel_size: int = 7,
                  dropout: float = 0.5) -> FCNSkipHead:
    """:class:`FCNSkipHead` wired by stride (:func:`skip_indices`); options as the class.

    Raises:
        ValueError: ``num_skips`` not 0, 1 or 2, or a backbone without the skip levels.
    """
    if num_skips not in (0, 1, 2):
        raise ValueError(f"fcn_skip_head: num_skips must be 0, 1 or 2 (FCN-32s/16s/8s), got {num_skips}")
    n = len(features)
    indices = tuple(i - n for i in skip_indices(features, num_skips))  # negative, as the class
    return FCNSkipHead(features.channels, features.strides, num_classes, num_skips=num_skips,
                       fc_channels=fc_channels, fc_kernel_size=fc_kernel_size, dropout=dropout,
                       in_indices=indices)


__all__ = ["FCNSkipHead", "fcn_skip_head", "skip_indices", "vgg_classifier_to_fc"]
