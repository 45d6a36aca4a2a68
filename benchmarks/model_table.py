"""The model zoo table: every model x backbone with parameters, GFLOPs and paper source.

    python benchmarks/model_table.py                       # writes docs/model_zoo.md
    python benchmarks/model_table.py --output - --only unet

Models are built on the ``meta`` device (no memory, no compute) and run once on a
(1, 3, 512, 512) input under ``torch.utils.flop_counter.FlopCounterMode``, which counts
FLOPs = 2 x multiply-accumulates of convolutions and matrix products (normalisation,
activations, pooling and interpolation are not counted). The counts depend only on shapes, so
they are the same on every machine; the machine line records where the table was generated.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import segzoo  # noqa: E402
from segzoo.bench.flops import count_flops, count_params  # noqa: E402
from segzoo.bench.machine import cpu_model  # noqa: E402
from segzoo.registry import MODELS  # noqa: E402

NUM_CLASSES = 21  # PASCAL VOC, as the papers' headline numbers


@dataclass
class Row:
    model: str
    backbone: str
    kwargs: dict = field(default_factory=dict)
    note: str = ""
    size: int = 512


ROWS = [
    Row("fcn32s", "vgg16", note="paper: fc6 7x7 4096, fc7 4096"),
    Row("fcn16s", "vgg16"),
    Row("fcn8s", "vgg16"),
    Row("fcn8s", "resnet50", {"fc_channels": 512, "fc_kernel_size": 3}, "any backbone; slim fc 512, 3x3"),
    Row("fcn", "resnet50", {"output_stride": 8}, "= torchvision fcn_resnet50"),
    Row("fcn", "resnet101", {"output_stride": 8}, "= torchvision fcn_resnet101"),
    Row("unet", "unet_encoder", {"padding": "same"}, "original widths 64..1024, padded"),
    Row("unet", "unet_encoder", {"padding": "valid"}, "raw valid tile 572 -> 388", size=572),
    Row("unet", "resnet34", {}, "smp-style decoder (256..16)"),
    Row("unet", "mobilenet_v2", {}, "smp-style decoder (256..16)"),
    Row("deeplabv2", "resnet101", {"output_stride": 8}, "ASPP-L 6/12/18/24, summed"),
    Row("deeplabv3", "resnet50", {"output_stride": 8, "bottleneck": True, "aspp_dropout": 0.5},
        "= torchvision deeplabv3_resnet50"),
    Row("deeplabv3", "resnet101", {"output_stride": 16, "multi_grid": (1, 2, 4)}, "paper training setting"),
    Row("deeplabv3", "resnet101", {"output_stride": 8, "multi_grid": (1, 2, 4)}, "paper inference setting"),
    Row("deeplabv3", "mobilenet_v2", {"output_stride": 16}, "mobile variant"),
    Row("deeplabv3plus", "resnet101", {"output_stride": 16}, "separable ASPP + decoder"),
    Row("deeplabv3plus", "xception65", {"output_stride": 16}, "paper's backbone (timm)"),
    Row("deeplabv3plus", "mobilenet_v2", {"output_stride": 16}, "mobile variant"),
    Row("deeplabv3plus", "tu-efficientnet_b0", {"output_stride": 16}, "any timm model"),
    Row("pspnet", "resnet50", {"output_stride": 8}, "+ aux head (training only)"),
    Row("pspnet", "resnet101", {"output_stride": 8}, "+ aux head (training only)"),
    Row("maskrcnn", "resnet50", {"num_classes": 81}, "FPN, = torchvision maskrcnn_resnet50_fpn (81 classes)"),
    Row("maskrcnn", "resnet50", {"num_classes": 81, "variant": "c4"}, "C4: conv5 as the RoI head (81 classes)"),
    Row("maskrcnn", "mobilenet_v2", {"num_classes": 81}, "FPN on MobileNetV2 (81 classes)"),
]


def measure(model: nn.Module, size: int = 512) -> tuple[int, int]:
    """(parameters, FLOPs) of one eval forward of a (1, 3, size, size) input; FLOPs = 2 x MACs.

    Works on meta-device models (nothing is computed). Counted by :mod:`segzoo.bench.flops`,
    which ``segzoo bench`` uses too."""
    return count_params(model), count_flops(model, size)


def build(row: Row, num_classes: int = NUM_CLASSES) -> nn.Module:
    """The row's model on the meta device (``row.kwargs`` may override ``num_classes``)."""
    with torch.device("meta"):
        return segzoo.build_model(row.model, backbone=row.backbone, **{"num_classes": num_classes, **row.kwargs})


def _settings(row: Row) -> str:
    parts = [f"{k}={'/'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in row.kwargs.items()]
    return ", ".join(parts)


def table(rows: list[Row], num_classes: int = NUM_CLASSES) -> str:
    """Markdown table of ``rows``."""
    lines = [
        "| model | backbone | settings | params (M) | GFLOPs | input | notes | paper |",
        "|---|---|---|---:|---:|---|---|---|",
    ]
    for row in rows:
        model = build(row, num_classes)
        if getattr(model, "task", "semantic") == "instance":  # data-dependent: RoIs reaching the heads
            params, gflops = count_params(model), "data-dependent"
        else:
            params, flops = measure(model, row.size)
            gflops = f"{flops / 1e9:.1f}"
        paper = MODELS.entry(row.model).meta.get("paper", "")
        lines.append(f"| `{row.model}` | `{row.backbone}` | {_settings(row)} | {params / 1e6:.1f} | "
                     f"{gflops} | {row.size}x{row.size} | {row.note} | {paper} |")
    return "\n".join(lines) + "\n"


def machine() -> str:
    """Host, CPU model and versions, for the table's provenance line."""
    return (f"host `{platform.node() or 'unknown'}` ({cpu_model()}, {platform.system()}), "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def document(rows: list[Row]) -> str:
    return f"""# Model zoo

Every registered model with the backbones we ship, built for {NUM_CLASSES} classes (PASCAL VOC) with
the builder's defaults plus the listed settings. Parameters include training-only auxiliary heads
where a model builds one by default (PSPNet). GFLOPs are for one image at the given input size in
eval mode, counted with `torch.utils.flop_counter.FlopCounterMode` (FLOPs = 2 x multiply-adds
of convolutions and matrix products; normalisation, activations, pooling and interpolation are not
counted). Reference: torchvision's `fcn_resnet50` has 33.0M parameters (35.3M with `aux_loss`),
`deeplabv3_resnet50` 39.6M (42.0M); `tests/models/test_torchvision_parity.py` checks ours equal them.
Mask R-CNN rows give parameters only: its FLOPs depend on how many proposals and detections reach
the RoI heads (see [benchmarks.md](benchmarks.md) for its measured latency against torchvision).

Generated by `python benchmarks/model_table.py` on {machine()},
{datetime.date.today().isoformat()} (the counts depend only on shapes, not on the machine).

{table(rows)}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(REPO / "docs" / "model_zoo.md"),
                        help="markdown file to write ('-' for stdout)")
    parser.add_argument("--only", nargs="+", help="only these models")
    args = parser.parse_args(argv)
    rows = [r for r in ROWS if not args.only or r.model in args.only]
    text = document(rows)
    if args.output == "-":
        print(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
