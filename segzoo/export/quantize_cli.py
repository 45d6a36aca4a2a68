"""The ``segzoo quantize`` subcommand (registered by :func:`segzoo.cli.build_parser` through
:func:`add_parser`): post-training static int8 quantization (:mod:`segzoo.export.quantize`)."""

from __future__ import annotations

import argparse
import time

import torch

from segzoo.errors import ConfigError

EPILOG = """examples:
  segzoo quantize configs/protocols/camvid-cpu/fcn8s_mobilenetv2.yaml --checkpoint work_dirs/protocols/camvid-cpu/fcn8s_mobilenetv2/seed0/checkpoints/last.pt --calib 32 --output fcn8s_int8.pt2
  segzoo quantize CONFIG --checkpoint CKPT --calib 64 --output model_int8.pt2 --eval

Run the result (Python):
  from segzoo.export.quantize import Int8Model, load_int8
  model = Int8Model(*load_int8("model_int8.pt2"))   # torch.compile'd int8 kernels on first call
  logits = model(images)                            # (N, 3, H, W) normalised -> (N, K, H, W)
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="post-training static int8 quantization for x86 CPUs "
                                        "(PT2E; needs segzoo[quantize])",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config file (the one the checkpoint was trained with)")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="override config keys, values parsed as YAML")
    p.add_argument("--checkpoint", required=True, help="trained checkpoint")
    p.add_argument("--calib", type=int, default=32, metavar="N",
                   help="calibration images from the train split, through the val transforms (default 32)")
    p.add_argument("--output", required=True, help="the .pt2 file to write (torch.export.save)")
    p.add_argument("--keep-float", nargs="+", default=[], metavar="MODULE",
                   help="more module names left in float32 (as in model.named_modules())")
    p.add_argument("--float-classifiers", action="store_true",
                   help="keep the class-score convolutions in float32 "
                        "(segzoo.export.quantize.classifier_convs)")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                   help="7-bit activations, needed for accuracy on CPUs without VNNI (default: on "
                        "exactly when this CPU has no VNNI; quantize for the CPU you deploy on)")
    p.add_argument("--eval", action="store_true",
                   help="also score the float and the int8 (compiled) model on the val split and "
                        "print the mIoU change")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.set_defaults(func=cmd_quantize)


def score_on_val(model: torch.nn.Module, cfg, meta: dict) -> dict:
    """The config's evaluation of ``model`` on its val split (``cfg.eval`` settings) at batch 1
    (one input size per val image size: one compilation of an int8 model where the val
    pipeline resizes to a fixed size). Returns ``mIoU``, ``pixel_acc``, ``images``, ``seconds``.

    Raises:
        ConfigError: the config has no ``data.val`` split.
    """
    from segzoo import builders
    from segzoo.evaluation.evaluator import evaluate

    if cfg.data.val is None:
        raise ConfigError("the config has no data.val split to evaluate on")
    cfg.data.val.batch_size = 1
    dataset = builders.dataset_from_split(cfg, cfg.data.val)
    loader = builders.loader_from_split(cfg, cfg.data.val, dataset, train=False)
    t0 = time.perf_counter()
    m = evaluate(model, loader, num_classes=meta["num_classes"], ignore_index=cfg.data.ignore_index,
                 class_names=dataset.class_names, eval_cfg=cfg.eval, progress=False)
    return {"mIoU": m["mIoU"], "pixel_acc": m.get("pixel_acc"), "images": m.get("num_images"),
            "seconds": time.perf_counter() - t0}


def cmd_quantize(args: argparse.Namespace) -> int:
    from segzoo.checkpoint import load_trained_model
    from segzoo.config import load_config
    from segzoo.export.quantize import (
        Int8Model,
        calibration_images,
        classifier_convs,
        int8_metadata,
        load_int8,
        quantize_int8,
        save_int8,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.set or [])
    model, meta = load_trained_model(cfg, args.checkpoint, "cpu")
    calib = calibration_images(cfg, args.calib)
    keep = list(args.keep_float) + (classifier_convs(model) if args.float_classifiers else [])
    t0 = time.perf_counter()
    program = quantize_int8(model, calib, keep_float=keep, reduce_range=args.reduce_range)
    path = save_int8(program, args.output,
                     int8_metadata(cfg, meta, program, calib, keep, args.reduce_range))
    program, int8_meta = load_int8(path)  # what a user gets back
    check = calib[: min(4, len(calib))]
    reference = Int8Model(program, int8_meta, compile=False)
    diffs, agree = [], []
    with torch.no_grad():
        for x in check:
            got, ref = reference(x), model(x)
            diffs.append((got - ref).abs().max().item())
            agree.append((got.argmax(1) == ref.argmax(1)).float().mean().item())
    print(f"quantized {cfg.model.name} with {len(calib)} calibration images in "
          f"{time.perf_counter() - t0:.0f} s: {path} ({path.stat().st_size / 2**20:.1f} MiB; int8 "
          f"weights, per-channel scales; uint8 activations, per-tensor scales); on {len(check)} "
          f"calibration images int8 vs float32: max |logit diff| {max(diffs):.3g}, argmax "
          f"agreement {100 * min(agree):.1f}% (worst image); input images N x 3 x H x W, "
          f"H, W >= {int8_meta['min_input_size']}")
    if args.eval:
        fp32 = score_on_val(model, cfg, meta)
        int8 = score_on_val(Int8Model(program, int8_meta, compile=True), cfg, meta)
        print(f"val mIoU: float32 {100 * fp32['mIoU']:.2f}, int8 {100 * int8['mIoU']:.2f} "
              f"(change {100 * (int8['mIoU'] - fp32['mIoU']):+.2f} points, {int8['images']} images)")
    return 0
