"""The ``segzoo`` command line: list, train, eval, predict, export, quantize, compare, bench.

    segzoo list [models|backbones|datasets|transforms|losses]
    segzoo train CONFIG [--work-dir DIR] [--set key=value ...] [--resume]
    segzoo eval CONFIG --checkpoint PATH [--set ...] [--out FILE]
    segzoo predict CONFIG --checkpoint PATH --input DIR_OR_FILE --output DIR [--set ...]
    segzoo predict CONFIG --backend onnxruntime --model model.onnx --input ... --output DIR
    segzoo export CONFIG --checkpoint PATH --output model.onnx [--size H W] [--no-verify]
    segzoo quantize CONFIG --checkpoint PATH --calib N --output model_int8.pt2 [--eval]
    segzoo data check CONFIG [--split train val] [--out report.json]
    segzoo compare RUN_DIR [RUN_DIR ...] [--out table.md]
    segzoo bench [--models all] [--size H [W]] [--batch 1 8] [--deploy] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segzoo.errors import SegzooError

GROUPS = ("models", "backbones", "heads", "datasets", "transforms", "losses", "optimizers", "schedulers")


def cmd_list(args: argparse.Namespace) -> int:
    from segzoo import registry as r
    from segzoo.config.validate import registries

    registries()  # import everything that registers
    regs = {"models": r.MODELS, "backbones": r.BACKBONES, "heads": r.HEADS, "datasets": r.DATASETS,
            "transforms": r.TRANSFORMS, "losses": r.LOSSES, "optimizers": r.OPTIMIZERS,
            "schedulers": r.SCHEDULERS}
    groups = [args.group] if args.group else ["models", "backbones", "datasets"]
    if groups == ["heads"]:
        return _list_heads()
    for group in groups:
        reg = regs[group]
        print(f"{group}:")
        for name in reg.names():
            meta = reg.entry(name).meta
            extra = "  ".join(f"[{meta[k]}]" for k in ("task",) if k in meta)
            paper = f"  {meta['paper']}" if "paper" in meta else ""
            print(f"  {name:<16}{extra}{paper}")
        for prefix in reg.prefixes():
            meta = reg.prefix_meta(prefix)
            paper = f"  {meta['paper']}" if "paper" in meta else ""
            print(f"  {prefix + '<name>':<16}[{meta.get('family', 'a family of names')}]{paper}")
    return 0


def _list_heads() -> int:
    """``segzoo list heads``: each decode head, what it reads and the backbones it decodes."""
    from segzoo.models.heads import describe_heads

    for name, info in describe_heads().items():
        print(f"{name}:  {info['paper']}".rstrip(" :"))
        print(f"  reads     {info['reads']}")
        print(f"  options   {', '.join(info['options'])}")
        print(f"  backbones {', '.join(info['backbones'])}")
        for backbone, reason in info["refused"].items():
            print(f"  not on {backbone}: {reason}")
    return 0


def _load(args: argparse.Namespace):
    from segzoo.config import load_config

    return load_config(args.config, args.set or [])


def cmd_train(args: argparse.Namespace) -> int:
    from segzoo.engine import Trainer

    cfg = _load(args)
    work_dir = Path(args.work_dir or cfg.work_dir or Path("work_dirs") / Path(args.config).stem)
    Trainer(cfg, work_dir, resume=args.resume).train()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from segzoo.engine.logger import write_json
    from segzoo.evaluation import evaluate_checkpoint, format_metrics

    cfg = _load(args)
    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else (
        ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent) / f"eval_{ckpt.stem}.json"
    results = out.with_name(out.stem + "_coco_results.json")
    metrics = evaluate_checkpoint(cfg, ckpt, cross_task=True if args.cross_task else None, results_path=results)
    print(format_metrics(metrics))
    if metrics.get("inference_changes"):
        print("evaluated with " + "; ".join(metrics["inference_changes"]) + " (trained otherwise)")
    write_json(out, {**metrics, "checkpoint": str(ckpt), "config": str(args.config)})
    print(f"metrics written to {out}" + (f"; COCO results to {results}" if "mask_AP" in metrics else ""))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from segzoo import builders
    from segzoo.checkpoint import load_trained_model
    from segzoo.errors import PredictionError
    from segzoo.inference.predict import find_images, predict_images

    cfg = _load(args)
    if args.backend == "onnxruntime":
        from segzoo.export.runtime import load_onnx_model

        if not args.model:
            raise SegzooError("--backend onnxruntime needs --model model.onnx (written by segzoo export)")
        device = "cpu"
        model, meta = load_onnx_model(cfg, args.model)
    else:
        if not args.checkpoint:
            raise SegzooError("--checkpoint is required (or --backend onnxruntime --model model.onnx)")
        device = builders.resolve_device(cfg.train.device)
        model, meta = load_trained_model(cfg, args.checkpoint, device)
    try:
        records = predict_images(model, cfg, find_images(args.input), args.output,
                                 palette=meta["palette"], class_names=meta["class_names"],
                                 device=device, batch_size=args.batch_size)
    except PredictionError as exc:
        records = exc.records
        print(f"wrote {len(records)} label PNGs to {Path(args.output) / 'labels'}")
        raise
    print(f"wrote {len(records)} label PNGs to {Path(args.output) / 'labels'} and overlays to "
          f"{Path(args.output) / 'overlays'}")
    if (Path(args.output) / "instances.json").is_file():
        print(f"instance predictions (COCO json): {Path(args.output) / 'instances.json'}")
    return 0


def _export_size(cfg) -> tuple[int, int] | None:
    """The val pipeline's fixed resize, else the train crop, as (H, W)."""
    for split, names in ((cfg.data.val, ("resize",)), (cfg.data.train, ("random_crop",))):
        for t in (split.transforms if split is not None else []):
            size = t.kwargs.get("size")
            if t.name in names and isinstance(size, list) and len(size) == 2:
                return int(size[0]), int(size[1])
    return None


def cmd_export(args: argparse.Namespace) -> int:
    from segzoo.checkpoint import load_trained_model
    from segzoo.export import export_onnx

    cfg = _load(args)
    model, meta = load_trained_model(cfg, args.checkpoint, "cpu")
    instance = getattr(model, "task", "semantic") == "instance"
    size = tuple(args.size) if args.size else _export_size(cfg)
    if size is None and not instance:  # a detector's own resize (min_size) gives its default
        raise SegzooError("cannot tell the input size to export: pass --size H W")
    sizes = [tuple(s) for s in args.verify_size] if args.verify_size else None
    result = export_onnx(model, args.output, size, opset=args.opset, verify=args.verify, sizes=sizes,
                         atol=args.atol)
    from segzoo.export.runtime import write_metadata

    write_metadata(result["path"], {
        "num_classes": meta["num_classes"], "class_names": list(meta["class_names"]),
        "palette": [list(map(int, c)) for c in meta["palette"]], "model": cfg.model.name,
        "min_input_size": result["min_size"],
        "mean": list(map(float, cfg.data.mean)), "std": list(map(float, cfg.data.std))})
    if instance:
        check = result["check"] if args.verify else "not verified (--no-verify)"
        print(f"exported {cfg.model.name} to {result['path']} ({result['description']}); {check}")
        return 0
    check = ("; onnxruntime matches PyTorch at " + ", ".join(
        f"{h}x{w} (max |diff| {d:.2e})" for (h, w), d in zip(result["sizes"], result["diffs"]))
        if args.verify else "; not verified (--no-verify)")
    print(f"exported {cfg.model.name} to {result['path']} (input images N x 3 x H x W, any N, H, W >= "
          f"{result['min_size']}, traced at {size[0]}x{size[1]}; output "
          f"logits N x K x H x W){check}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from segzoo.engine.logger import write_json
    from segzoo.evaluation.compare import evaluate_run
    from segzoo.evaluation.tables import format_table

    rows = [evaluate_run(run, checkpoint=args.checkpoint, overrides=args.set or [], device=args.device,
                         progress=True) for run in args.runs]
    table = format_table(rows)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")
        write_json(out.with_suffix(".json"), {"rows": rows})
        print(f"table written to {out} (metrics in {out.with_suffix('.json')})")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from segzoo import builders
    from segzoo.data.check import check_dataset
    from segzoo.engine.logger import write_json

    cfg = _load(args)
    splits = args.split or [s for s in ("train", "val") if getattr(cfg.data, s) is not None]
    reports = []
    for name in splits:
        split = getattr(cfg.data, name, None)
        if split is None:
            raise SegzooError(f"the config has no data.{name} split")
        report = check_dataset(lambda split=split: builders.dataset_from_split(cfg, split), name,
                               max_images=args.max_images, progress=True)
        print(report.format())
        reports.append(report)
    if args.out:
        write_json(Path(args.out), {r.split: r.to_dict() for r in reports})
        print(f"report written to {args.out}")
    bad = sum(len(r.problems) for r in reports)
    if bad:
        print(f"segzoo data check: {bad} problem(s) found", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segzoo", description="segzoo: a segmentation model zoo")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models, backbones, datasets, ...")
    p.add_argument("group", nargs="?", choices=GROUPS)
    p.set_defaults(func=cmd_list)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="YAML config file")
        p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                       help="override config keys, values parsed as YAML (e.g. train.max_iters=200)")

    p = sub.add_parser("train", help="train a model from a config")
    with_config(p)
    p.add_argument("--work-dir", help="run folder (default: work_dirs/<config name>)")
    p.add_argument("--resume", action="store_true", help="resume from <work-dir>/checkpoints/last.pt")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on the config's val split")
    with_config(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", help="metrics JSON path (default: eval_<checkpoint>.json in the run folder)")
    p.add_argument("--cross-task", action="store_true",
                   help="also score the other task: semantic models as instances (COCO AP of connected "
                        "components), instance models as semantic maps (same as eval.cross_task=true)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="write label PNGs and overlays for images")
    with_config(p)
    p.add_argument("--checkpoint", help="trained checkpoint (the pytorch backend)")
    p.add_argument("--backend", choices=["pytorch", "onnxruntime"], default="pytorch",
                   help="run the network in PyTorch (default) or run an exported --model in onnxruntime")
    p.add_argument("--model", help="exported .onnx file (with --backend onnxruntime)")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=1,
                   help="images per forward pass (consecutive images of equal size after the val transforms)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a semantic model to ONNX (needs segzoo[onnx])")
    with_config(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--size", nargs=2, type=int, metavar=("H", "W"),
                   help="input size (default: the val resize or train crop size of the config)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18)")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="run the graph with onnxruntime at three other sizes (odd ones included) and "
                        "fail if a logit differs from PyTorch by more than --atol (default: on)")
    p.add_argument("--verify-size", nargs=2, type=int, action="append", metavar=("H", "W"),
                   help="a size to verify at (repeat; default 97x131, 360x480, 513x513)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest allowed |logit difference| (1e-4)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compare", help="semantic-vs-instance table of trained runs (both rows per model)")
    p.add_argument("runs", nargs="+", help="run folders (config.yaml + checkpoints/)")
    p.add_argument("--checkpoint", default="last.pt", help="checkpoint file name in checkpoints/ (default last.pt)")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE", help="config overrides for every run")
    p.add_argument("--device", help="device (default: the runs' train.device)")
    p.add_argument("--out", help="write the markdown table here (and the metrics next to it as .json)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("check", help="scan the config's dataset splits: counts, sizes, class "
                                          "frequencies and problems (exit code 1 if any)")
    with_config(p)
    p.add_argument("--split", nargs="+", choices=["train", "val"], help="splits to scan (default: both)")
    p.add_argument("--max-images", type=int, help="scan only the first N samples of each split")
    p.add_argument("--out", help="also write the report as JSON")
    p.set_defaults(func=cmd_data_check)
    # --- bench: the subcommand lives in segzoo/bench/cli.py
    from segzoo.bench.cli import add_parser as add_bench_parser

    add_bench_parser(sub)
    # --- quantize: the subcommand lives in segzoo/export/quantize_cli.py
    from segzoo.export.quantize_cli import add_parser as add_quantize_parser

    add_quantize_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SegzooError as exc:
        print(f"segzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not about a path: a real bug, keep the traceback
            raise
        print(f"segzoo {args.command}: error: {exc.filename}: {exc.strerror}; check the path (a "
              "work dir or output must be a folder you can write to)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"segzoo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
