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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from torch import Tensor

from segzoo.models.weights import WeightsError

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
_ARCHS = {"fcn": _HEAD_FCN, "deeplabv3": _HEAD_DEEPLABV3}


def from_torchvision(state_dict: Mapping[str, Tensor], arch: Literal["fcn", "deeplabv3"]) -> dict[str, Tensor]:
    """Rename a torchvision segmentation state dict to segzoo's keys.

    Args:
        state_dict: of ``torchvision.models.segmentation.fcn_resnet50/101`` (``arch="fcn"``) or
            ``deeplabv3_resnet50/101`` (``arch="deeplabv3"``), with or without ``aux_classifier``.
        arch: which family.

    Returns:
        A state dict for :func:`~segzoo.models.fcn_resnet50` / ``fcn_resnet101`` /
        :func:`~segzoo.models.deeplabv3_resnet50` / ``deeplabv3_resnet101`` (built with
        ``aux_loss=True`` when the checkpoint has an ``aux_classifier``).

    Raises:
        WeightsError: an unknown ``arch``, or keys this converter does not know (listed).
    """
    if arch not in _ARCHS:
        raise WeightsError(f"unknown arch {arch!r}; from_torchvision converts {sorted(_ARCHS)}")
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
