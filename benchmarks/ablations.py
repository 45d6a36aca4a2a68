"""The papers' ablations as a runnable, resumable suite; writes docs/ablations.md.

    python benchmarks/ablations.py                          # every group, shapes 64x64, 300 iterations
    python benchmarks/ablations.py --only fcn_skips --iters 600 --seeds 0 1
    python benchmarks/ablations.py --dataset camvid --set data.train.batch_size=4   # real data
    python benchmarks/ablations.py --report-only            # rewrite the doc from the cache

Groups: FCN-32s vs 16s vs 8s; DeepLab v2 (summed ASPP) vs v3 (concatenated ASPP + image pooling,
and without image pooling) vs v3+ (decoder); PSPNet with vs without the auxiliary loss; Mask
R-CNN RoIAlign vs RoIPool and sigmoid vs softmax masks (a group whose model is not registered is
listed, not run). Every run trains through the normal engine from the model's own config with
one common schedule (``--iters``, the config's optimizer and poly schedule, ``--size`` on shapes)
and is cached in ``benchmarks/results/ablations.json`` (:mod:`segzoo.bench.runs`): finished runs
are not rerun, interrupted ones resume. The doc's generated section sits between
``<!-- ablations:start -->`` and ``<!-- ablations:end -->``; the rest of docs/ablations.md (the
commentary) is written by hand.
"""

from __future__ import annotations

import argparse
import glob
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segzoo.bench.report import replace_section  # noqa: E402
from segzoo.bench.runs import TrainSpec, common_schedule, load_cache, train_cached  # noqa: E402
from segzoo.registry import MODELS  # noqa: E402

CACHE = REPO / "benchmarks" / "results" / "ablations.json"
DOC = REPO / "docs" / "ablations.md"
WORK = REPO / "work_dirs" / "bench_runs"


@dataclass(frozen=True)
class Variant:
    name: str
    configs: dict[str, str]             # dataset -> config path (relative to the repo); may be a glob
    overrides: tuple[str, ...] = ()
    paper: float | None = None          # the paper's figure for this variant, if it gives one
    label: str = ""


@dataclass(frozen=True)
class Group:
    key: str
    title: str
    metric: str                         # the metrics.json key compared
    paper_metric: str                   # what the paper's figures are
    variants: tuple[Variant, ...]
    requires: str | None = None         # a model that must be registered
    note: str = ""
    extra_metrics: tuple[str, ...] = field(default_factory=tuple)


# the FPN Mask R-CNN (torchvision's layout; the paper's Table 2 uses C4, whose conv5 RoI head trains
# several times slower on CPU: configs/maskrcnn/maskrcnn-c4_resnet18_shapes-64x64.yaml)
MASKRCNN_SHAPES = {"shapes": "configs/maskrcnn/maskrcnn_resnet18_shapes-64x64.yaml"}


def _cfg(arch: str, shapes: str, camvid: str | None = None) -> dict[str, str]:
    out = {"shapes": f"configs/{arch}/{shapes}"}
    if camvid:
        out["camvid"] = f"configs/{arch}/{camvid}"
    return out


GROUPS = (
    Group("fcn_skips", "FCN-32s vs FCN-16s vs FCN-8s (skip connections)", "mIoU",
          "mean IU, PASCAL VOC 2011 val (Long et al. 2015)", (
              Variant("fcn32s", _cfg("fcn", "fcn32s_vgg16-bn_shapes-64x64.yaml", "fcn32s_vgg16_camvid-480x360.yaml"),
                      paper=59.4, label="FCN-32s"),
              Variant("fcn16s", _cfg("fcn", "fcn16s_vgg16-bn_shapes-64x64.yaml", "fcn16s_vgg16_camvid-480x360.yaml"),
                      paper=62.4, label="FCN-16s (+pool4)"),
              Variant("fcn8s", _cfg("fcn", "fcn8s_vgg16-bn_shapes-64x64.yaml", "fcn8s_vgg16_camvid-480x360.yaml"),
                      paper=62.7, label="FCN-8s (+pool3)"),
          ), note="VGG-16-BN with slim 512-wide fc6/fc7 on shapes (the configs' CPU setting)",
          extra_metrics=("pixel_acc",)),
    Group("deeplab", "DeepLab v2 (summed ASPP) vs v3 (concatenated ASPP + image pooling) vs v3+ (decoder)",
          "mIoU", "mIoU, PASCAL VOC 2012 test, each paper's best model (different pretraining: v2 "
          "COCO + CRF, v3 COCO, v3+ JFT; not one controlled ablation)", (
              Variant("deeplabv2", _cfg("deeplabv2", "deeplabv2_resnet18_shapes-64x64.yaml",
                                        "deeplabv2_resnet101_camvid-480x360.yaml"),
                      paper=79.7, label="v2: ASPP-L summed, OS 8"),
              Variant("deeplabv3_nopool", _cfg("deeplabv3", "deeplabv3_resnet18_shapes-64x64.yaml",
                                               "deeplabv3_resnet101_camvid-480x360.yaml"),
                      overrides=("model.image_pooling=false",), label="v3 without image pooling, OS 16"),
              Variant("deeplabv3", _cfg("deeplabv3", "deeplabv3_resnet18_shapes-64x64.yaml",
                                        "deeplabv3_resnet101_camvid-480x360.yaml"),
                      paper=85.7, label="v3: ASPP concat + image pooling, OS 16"),
              Variant("deeplabv3plus", _cfg("deeplabv3plus", "deeplabv3plus_resnet18_shapes-64x64.yaml",
                                            "deeplabv3plus_resnet101_camvid-480x360.yaml"),
                      paper=89.0, label="v3+: + decoder (separable), OS 16"),
          ), note="ResNet-18 for all on shapes (the papers: ResNet-101 / Xception), each at its "
                  "paper's output stride", extra_metrics=("pixel_acc",)),
    Group("pspnet_aux", "PSPNet with vs without the auxiliary loss (deep supervision)", "mIoU",
          "the paper reports the auxiliary loss helps on ADE20K val and picks weight 0.4 "
          "(sec. 3.3); figures not in our architecture reference, so not quoted", (
              Variant("pspnet_aux", _cfg("pspnet", "pspnet_resnet18_shapes-64x64.yaml",
                                         "pspnet_resnet50_camvid-480x360.yaml"),
                      label="aux head on layer3, weight 0.4"),
              Variant("pspnet_noaux", _cfg("pspnet", "pspnet_resnet18_shapes-64x64.yaml",
                                           "pspnet_resnet50_camvid-480x360.yaml"),
                      overrides=("model.aux_head=false",), label="no auxiliary loss"),
          ), note="ResNet-18, output stride 8 on shapes", extra_metrics=("pixel_acc",)),
    # Mask R-CNN: options model.roi_op and model.mask_loss; skipped while `maskrcnn` is
    # not registered.
    Group("maskrcnn", "Mask R-CNN: RoIAlign vs RoIPool, sigmoid vs softmax masks", "mask_AP",
          "mask AP, COCO minival, ResNet-50-C4 (He et al. 2017, Table 2)", (
              Variant("maskrcnn_align_sigmoid", MASKRCNN_SHAPES,
                      overrides=("model.roi_op=align", "model.mask_loss=sigmoid"), paper=30.3,
                      label="RoIAlign, per-class sigmoid (paper's choice)"),
              Variant("maskrcnn_pool", MASKRCNN_SHAPES,
                      overrides=("model.roi_op=pool",), paper=26.9, label="RoIPool"),
              Variant("maskrcnn_softmax", MASKRCNN_SHAPES,
                      overrides=("model.mask_loss=softmax",), paper=24.8, label="softmax over classes"),
          ), requires="maskrcnn",
          note="ResNet-18-FPN from scratch, batch 8 (the paper: ResNet-50-C4, COCO)", extra_metrics=("mask_AP75", "bbox_AP")),
)


def resolve_config(variant: Variant, dataset: str) -> str | None:
    pattern = variant.configs.get(dataset)
    if pattern is None:
        return None
    hits = sorted(glob.glob(str(REPO / pattern)))
    return hits[0] if hits else None


def run_key(group: Group, variant: Variant, dataset: str, seed: int) -> str:
    return f"{dataset}/{group.key}/{variant.name}/seed{seed}"


def run_all(args: argparse.Namespace, log=print) -> list[str]:
    """Train every selected run not cached yet; returns the notes of skipped groups/variants."""
    notes = []
    for group in GROUPS:
        if args.only and group.key not in args.only:
            continue
        if group.requires and group.requires not in MODELS:
            notes.append(f"{group.key}: skipped, needs {group.requires} (not registered)")
            log(f"{group.key}: skipped (needs {group.requires}, not registered)")
            continue
        for variant in group.variants:
            config = resolve_config(variant, args.dataset)
            if config is None:
                notes.append(f"{group.key}/{variant.name}: no {args.dataset} config")
                continue
            for seed in args.seeds:
                spec = TrainSpec(run_key(group, variant, args.dataset, seed), config,
                                 (*variant.overrides, *common_schedule(args.dataset, args.iters, args.size, seed),
                                  *(args.set or [])))
                t0 = time.perf_counter()
                rec = train_cached(spec, args.work_dir, args.cache, log=log)
                m = rec["metrics"].get(group.metric)
                log(f"  {spec.key}: {group.metric} {m if m is None else round(100 * m, 2)} "
                    f"({time.perf_counter() - t0:.0f} s)")
    return notes


def _fmt(values: list[float]) -> str:
    vals = [100 * v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{statistics.mean(vals):.1f} ± {(max(vals) - min(vals)) / 2:.1f} (n={len(vals)})"


def report(cache: dict, dataset: str, seeds: list[int], iters: int, size: int, command: str) -> str:
    """The generated section of docs/ablations.md: one table per group, ours next to the paper."""
    runs = cache.get("runs", {})
    parts = [f"Runs: `{command}` (cached in `benchmarks/results/ablations.json`; "
             "`--report-only` rewrites this section from the cache).", ""]
    for group in GROUPS:
        parts += [f"### {group.title}", ""]
        if group.requires and group.requires not in MODELS:
            parts += [f"Not run: needs {group.requires} (not registered). Variants ready to run once it is registered: "
                      + ", ".join(f"{v.label} (`{' '.join(v.overrides)}`)" for v in group.variants)
                      + f". Paper ({group.paper_metric}): "
                      + ", ".join(f"{v.label} {v.paper}" for v in group.variants if v.paper is not None)
                      + ".", ""]
            continue
        cols = [group.metric, *group.extra_metrics]
        head = ["variant", *(f"ours {c} (%)" for c in cols), "params (M)", "train time (s)", "paper"]
        lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
        found = False
        for v in group.variants:
            recs = [runs.get(run_key(group, v, dataset, s)) for s in seeds]
            recs = [r for r in recs if r]
            if not recs:
                lines.append(f"| {v.label} | " + " | ".join(["not run"] * (len(head) - 2)) + f" | {v.paper or '-'} |")
                continue
            found = True
            times = [r["train_seconds"] for r in recs if r.get("train_seconds") and not r.get("resumed")]
            cells = [v.label, *(_fmt([r["metrics"].get(c) for r in recs]) for c in cols),
                     f"{recs[0]['params'] / 1e6:.1f}" if recs[0].get("params") else "n/a",
                     f"{statistics.mean(times):.0f}" if times else (
                         "n/a (resumed)" if any(r.get("resumed") for r in recs) else "n/a"),
                     f"{v.paper}" if v.paper is not None else "-"]
            lines.append("| " + " | ".join(cells) + " |")
        parts += [f"Ours: {dataset}" + (f" {size}x{size}" if dataset == "shapes" else "") +
                  f", {iters} iterations, seeds {seeds}; {group.note}. Paper: {group.paper_metric}.", "",
                  *lines, ""]
        if found:
            parts += [ordering_line(group, runs, dataset, seeds), ""]
    return "\n".join(parts)


def ordering_line(group: Group, runs: dict, dataset: str, seeds: list[int]) -> str:
    """A factual sentence: our ranking of the variants, and whether it matches the paper's."""
    mean = {}
    for v in group.variants:
        vals = [runs[k]["metrics"].get(group.metric) for s in seeds
                if (k := run_key(group, v, dataset, s)) in runs]
        vals = [x for x in vals if x is not None and not math.isnan(x)]
        if vals:
            mean[v.label] = statistics.mean(vals)
    ours = sorted(mean, key=mean.get, reverse=True)
    text = "Our ranking: " + " > ".join(f"{k} ({100 * mean[k]:.1f})" for k in ours) + "."
    paper = {v.label: v.paper for v in group.variants if v.paper is not None and v.label in mean}
    if len(paper) >= 2:
        theirs = sorted(paper, key=paper.get, reverse=True)
        ours_sub = [k for k in ours if k in paper]
        text += (" Same order as the paper." if ours_sub == theirs else
                 " The paper's order is " + " > ".join(theirs) + ": ours differs.")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[g.key for g in GROUPS])
    parser.add_argument("--dataset", default="shapes", choices=["shapes", "camvid"])
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--size", type=int, default=64, help="shapes image size")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE", help="extra config overrides")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("--work-dir", default=str(WORK))
    parser.add_argument("--cache", default=str(CACHE))
    parser.add_argument("--doc", default=str(DOC), help="markdown file to update ('-' for stdout)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the doc from the cache")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.report_only:
        run_all(args)
    command = (f"python benchmarks/ablations.py --dataset {args.dataset} --iters {args.iters} "
               f"--size {args.size} --seeds {' '.join(map(str, args.seeds))}"
               + (f" --set {' '.join(args.set)}" if args.set else ""))
    text = report(load_cache(args.cache), args.dataset, args.seeds, args.iters, args.size, command)
    if args.doc == "-":
        print(text)
    else:
        replace_section(args.doc, "ablations", text)
        print(f"updated {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
