"""The libraries users would otherwise pick, paired with our model of the same architecture.

``relation``:

* ``"equal"``: same layers, same parameter count; the peer's weights are copied into ours and the
  outputs compared (``max |ours - peer|`` is reported), so the latency ratio compares two
  implementations of one network.
* ``"similar"``: the same kind of network with documented differences (``note``); the ratio is
  reported, labelled "similar, not equal", next to both FLOP counts.
* ``"not offered"``: a peer with no segzoo counterpart; listed, not timed.

A pair whose segzoo side is not registered in this installation (or whose peer library is not
installed) is listed with :meth:`PeerPair.status` ("needs ...") and not timed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from segzoo.bench.candidates import Candidate
from segzoo.errors import SegzooError
from segzoo.registry import MODELS


@dataclass(frozen=True)
class PeerPair:
    key: str
    ours: Candidate | None
    peer: Candidate
    relation: str                      # equal | similar | not offered
    note: str = ""
    copy: str | None = None            # how the peer's weights go into ours (equal pairs)
    size: tuple[int, int] | None = None  # input size, when not the run's (--size, or --instance-size
                                         # for instance models)

    def status(self) -> str:
        """``"ready"``, or why the pair cannot be timed in this environment."""
        if self.ours is None:
            return self.relation
        if self.ours.source == "segzoo" and self.ours.name not in MODELS:
            return f"needs {self.ours.name} (not registered yet)"
        if self.peer.source == "smp":
            try:
                import segmentation_models_pytorch  # noqa: F401
            except ImportError:
                return "needs segmentation_models_pytorch (pip install -e '.[bench]')"
        return "ready"


_R50_TV_DLV3 = {"backbone": "resnet50", "output_stride": 8, "bottleneck": True, "aspp_dropout": 0.5}

PAIRS: list[PeerPair] = [
    PeerPair("torchvision fcn_resnet50",
             Candidate("segzoo", "fcn", {"backbone": "resnet50", "output_stride": 8}),
             Candidate("torchvision", "fcn_resnet50", {"aux_loss": False}),
             "equal", "our `fcn` (ResNet-50, OS 8) is torchvision's model layer for layer",
             copy="from_torchvision:fcn"),
    PeerPair("torchvision deeplabv3_resnet50",
             Candidate("segzoo", "deeplabv3", dict(_R50_TV_DLV3)),
             Candidate("torchvision", "deeplabv3_resnet50", {"aux_loss": False}),
             "equal", "`deeplabv3_resnet50()`: OS 8, rates 12/24/36, extra 3x3 conv after the ASPP",
             copy="from_torchvision:deeplabv3"),
    PeerPair("torchvision deeplabv3_mobilenet_v3_large", None,
             Candidate("torchvision", "deeplabv3_mobilenet_v3_large", {"aux_loss": False}),
             "not offered", "segzoo has no MobileNetV3-Large backbone of torchvision's layout "
             "(timm's `tu-mobilenetv3_large_100` taps different features); not timed"),
    PeerPair("torchvision maskrcnn_resnet50_fpn",
             Candidate("segzoo", "maskrcnn", {"backbone": "resnet50"}),
             Candidate("torchvision", "maskrcnn_resnet50_fpn", {}),
             "equal", "ResNet-50-FPN Mask R-CNN, torchvision's weights loaded through "
             "`from_torchvision(arch='maskrcnn')`; timed at `--instance-size` (default 800x1333), "
             "both with `box_score_thresh=0` (the mask head runs on the top 100 boxes)",
             copy="from_torchvision:maskrcnn"),
    PeerPair("torchvision keypointrcnn_resnet50_fpn",
             Candidate("segzoo", "keypointrcnn", {"backbone": "resnet50", "num_keypoints": 17}),
             Candidate("torchvision", "keypointrcnn_resnet50_fpn", {"num_keypoints": 17}),
             "equal", "ResNet-50-FPN Keypoint R-CNN (eight 3x3 512-d convs + deconv, 17 x 56 x 56 "
             "heatmaps), torchvision's weights loaded through `from_torchvision(arch='keypointrcnn')`; "
             "timed at `--instance-size`, both with `box_score_thresh=0` (the keypoint head runs on "
             "the top 100 boxes)",
             copy="from_torchvision:keypointrcnn"),
    PeerPair("smp Unet resnet34",
             Candidate("segzoo", "unet", {"backbone": "resnet34"}),
             Candidate("smp", "Unet", {"encoder_name": "resnet34"}, patch={"head_kernel_size": 1}),
             "equal", "smp's segmentation-head conv set to 1x1 as ours (its default 3x3, the only "
             "difference, adds 2.7k parameters and 1.4 GFLOPs at 512x512, 21 classes)", copy="order"),
    PeerPair("smp DeepLabV3 resnet50",
             Candidate("segzoo", "deeplabv3", dict(_R50_TV_DLV3)),
             Candidate("smp", "DeepLabV3", {"encoder_name": "resnet50", "encoder_output_stride": 8}),
             "similar", "equal parameters and FLOPs; smp dilates every unit of a dilated stage "
             "(ours and torchvision keep the previous rate in the first unit), so outputs differ"),
    PeerPair("smp DeepLabV3Plus resnet101",
             Candidate("segzoo", "deeplabv3plus", {"backbone": "resnet101", "output_stride": 16}),
             Candidate("smp", "DeepLabV3Plus", {"encoder_name": "resnet101", "encoder_output_stride": 16,
                                                "decoder_atrous_rates": (6, 12, 18)}),
             "similar", "smp: separable convs without BN+ReLU between depthwise and pointwise, an "
             "extra separable 3x3 after the ASPP, one decoder conv (ours two, as the paper), ASPP "
             "dropout 0.5, first unit of layer4 dilated"),
    PeerPair("smp PSPNet resnet50",
             Candidate("segzoo", "pspnet", {"backbone": "resnet50", "output_stride": 32, "aux_head": False}),
             Candidate("smp", "PSPNet", {"encoder_name": "resnet50", "encoder_depth": 5, "upsampling": 32}),
             "similar", "smp's PSPNet has no dilated backbone: closest setting is ours at output "
             "stride 32 vs smp on the full encoder (encoder_depth=5, x32); smp: 1x1 (ours 3x3) conv "
             "after the pyramid, no BN in the 1x1 bin, dropout 0.2, 3x3 head conv. smp's default "
             "(encoder_depth=3: ResNet cut after layer2) is a much smaller network"),
]


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters of moderate scale, so that an output
    comparison also tests the BN layers (fresh ones are identities in eval mode)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.45 + 0.8)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) * 0.2 + 0.8)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.05)


def copy_weights(method: str, peer: nn.Module, ours: nn.Module) -> None:
    """Load the peer's weights into ours: ``"from_torchvision:<arch>"`` through
    :func:`segzoo.models.convert.from_torchvision`, ``"order"`` tensor by tensor in state-dict
    order (the shapes must agree one to one).

    Raises:
        SegzooError: an unknown method, or state dicts that do not line up.
    """
    src = peer.state_dict()
    if method.startswith("from_torchvision:"):
        from segzoo.models.convert import from_torchvision

        ours.load_state_dict(from_torchvision(src, arch=method.split(":", 1)[1]), strict=True)
        return
    if method != "order":
        raise SegzooError(f"unknown weight copy method {method!r}")
    dst = ours.state_dict()
    if len(src) != len(dst):
        raise SegzooError(f"state dicts differ in length ({len(src)} vs {len(dst)})")
    new = {}
    for (ks, vs), (kd, vd) in zip(src.items(), dst.items()):
        if vs.shape != vd.shape:
            raise SegzooError(f"state dicts do not line up: {ks} {tuple(vs.shape)} vs {kd} {tuple(vd.shape)}")
        new[kd] = vs
    ours.load_state_dict(new, strict=True)


def find_pairs(keys: list[str] | None = None) -> list[PeerPair]:
    """The pairs named by ``keys`` (substrings, case-insensitive; all when None or ["all"])."""
    if not keys or keys == ["all"]:
        return list(PAIRS)
    out = [p for p in PAIRS if any(k.lower() in p.key.lower() for k in keys)]
    if not out:
        raise SegzooError(f"no peer pair matches {keys}; pairs: {', '.join(p.key for p in PAIRS)}")
    return out
