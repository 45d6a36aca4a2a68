"""Converting torchvision segmentation checkpoints to segzoo models.

torchvision's ``fcn_resnet50/101`` and ``deeplabv3_resnet50/101`` are, parameter for parameter,
our :func:`~segzoo.models.fcn_resnet50` and :func:`~segzoo.models.deeplabv3_resnet50`; only the
head names differ. With internet access, its published COCO-with-VOC-labels weights load so::

    import torch, torchvision
    from segzoo.models import deeplabv3_resnet50
    from segzoo.models.convert import from_torchvision

    url = torchvision.models.segmentation.DeepLabV3_ResNet50_Weights.DEFAULT.url
    tv_state = torch.hub.load_state_dict_from_url(url)          # has aux_classifier.* keys
    model = deeplabv3_resnet50(num_classes=21, aux_loss=True)
    model.load_state_dict(from_torchvision(tv_state, arch="deeplabv3"))

The outputs then equal torchvision's (max abs difference ~1e-6 in float32).

``arch="maskrcnn"`` converts ``torchvision.models.detection.maskrcnn_resnet50_fpn`` checkpoints for
``segzoo.models.maskrcnn(backbone="resnet50", num_classes=...)`` (91 for torchvision's COCO weights):
``backbone.body.*`` becomes ``backbone.*``, ``backbone.fpn.*`` becomes ``neck.*``, the RPN and RoI
heads keep their names, and BatchNorm counters absent from FrozenBatchNorm checkpoints are added.
The detections then equal torchvision's on the same images (``tests/models/test_maskrcnn_convert.py``).
``arch="keypointrcnn"`` does the same for ``keypointrcnn_resnet50_fpn`` checkpoints and
``segzoo.models.keypointrcnn(backbone="resnet50", num_classes=..., num_keypoints=...)``
(``tests/models/test_keypoint_convert.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

from segzoo.errors import WeightsError

# (torchvision key pattern, segzoo replacement), tried in order; backbone.* keys are identical
_HEAD_FCN = [
    (r"^{src}\.0\.", "{dst}.convs.0.0."),   # 3x3 conv
    (r"^{src}\.1\.", "{dst}.convs.0.1."),   # BN
    (r"^{src}\.4\.", "{dst}.conv_seg."),    # 1x1 classifier
]
_HEAD_DEEPLABV3 = [
    (r"^{src}\.0\.convs\.4\.1\.", "{dst}.aspp.image_pool.1.0."),  # image pooling conv
    (r"^{src}\.0\.convs\.4\.2\.", "{dst}.aspp.image_pool.1.1."),  # its BN
    (r"^{src}\.0\.convs\.(\d)\.", r"{dst}.aspp.convs.\1."),       # 1x1 + atrous branches
    (r"^{src}\.0\.project\.0\.", "{dst}.aspp.project.0.0."),
    (r"^{src}\.0\.project\.1\.", "{dst}.aspp.project.0.1."),
    (r"^{src}\.1\.", "{dst}.bottleneck.0."),                      # the extra 3x3 conv
    (r"^{src}\.2\.", "{dst}.bottleneck.1."),
    (r"^{src}\.4\.", "{dst}.conv_seg."),
]
_ARCHS = {"fcn": _HEAD_FCN, "deeplabv3": _HEAD_DEEPLABV3, "maskrcnn": [], "keypointrcnn": []}
_MASKRCNN_PREFIXES = ("rpn.", "roi_heads.")  # same names in torchvision's MaskRCNN and ours


def _maskrcnn(state_dict: Mapping[str, Tensor], arch: str = "maskrcnn") -> dict[str, Tensor]:
    out, unknown = {}, []
    for key, value in state_dict.items():
        if key.startswith("backbone.body."):
            out["backbone." + key[len("backbone.body."):]] = value
        elif key.startswith("backbone.fpn."):
            out["neck." + key[len("backbone.fpn."):]] = value
        elif key.startswith(_MASKRCNN_PREFIXES):
            out[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise WeightsError(f"from_torchvision(arch={arch!r}): {len(unknown)} key(s) it does not know: "
                           f"{', '.join(unknown[:6])}; is this a torchvision {arch}_resnet50_fpn checkpoint?")
    for key in [k for k in out if k.startswith("backbone.") and k.endswith(".running_mean")]:
        counter = key[: -len("running_mean")] + "num_batches_tracked"
        out.setdefault(counter, torch.zeros((), dtype=torch.long))  # FrozenBatchNorm2d has none
    return out


def from_torchvision(state_dict: Mapping[str, Tensor],
                     arch: Literal["fcn", "deeplabv3", "maskrcnn", "keypointrcnn"]) -> dict[str, Tensor]:
    """Rename a torchvision segmentation state dict to segzoo's keys.

    Args:
        state_dict: of ``torchvision.models.segmentation.fcn_resnet50/101`` (``arch="fcn"``) or
            ``deeplabv3_resnet50/101`` (``arch="deeplabv3"``), with or without ``aux_classifier``.
        arch: which family.

    Returns:
        A state dict for :func:`~segzoo.models.fcn_resnet50` / ``fcn_resnet101`` /
        :func:`~segzoo.models.deeplabv3_resnet50` / ``deeplabv3_resnet101`` (built with
        ``aux_loss=True`` when the checkpoint has an ``aux_classifier``), or, for ``"maskrcnn"``
        (``maskrcnn_resnet50_fpn``), for :func:`~segzoo.models.maskrcnn` with ``backbone="resnet50"``
        and the checkpoint's ``num_classes`` (counting the background); for ``"keypointrcnn"``
        (``keypointrcnn_resnet50_fpn``), for :func:`~segzoo.models.detectors.keypointrcnn` with
        ``backbone="resnet50"`` and the checkpoint's ``num_classes`` and ``num_keypoints``.

    Raises:
        WeightsError: an unknown ``arch``, or keys this converter does not know (listed).
    """
    if arch not in _ARCHS:
        raise WeightsError(f"unknown arch {arch!r}; from_torchvision converts {sorted(_ARCHS)}")
    if arch in ("maskrcnn", "keypointrcnn"):
        return _maskrcnn(state_dict, arch)
    rules = [(re.compile(p.format(src=r"classifier")), r.format(dst="decode_head"))
             for p, r in _ARCHS[arch]]
    rules += [(re.compile(p.format(src=r"aux_classifier")), r.format(dst="auxiliary_head"))
              for p, r in _HEAD_FCN]
    out, unknown = {}, []
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            out[key] = value
            continue
        for pattern, repl in rules:
            new, n = pattern.subn(repl, key)
            if n:
                out[new] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise WeightsError(f"from_torchvision(arch={arch!r}): {len(unknown)} key(s) it does not "
                           f"know: {', '.join(unknown[:6])}; is this a torchvision {arch} checkpoint?")
    return out
