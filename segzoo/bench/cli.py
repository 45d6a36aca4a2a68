"""The ``segzoo bench`` subcommand (registered by :func:`segzoo.cli.build_parser`)."""

from __future__ import annotations

import argparse
import shlex
import sys

import yaml

from segzoo.errors import SegzooError

EPILOG = """examples:
  segzoo bench --models all --size 512 --out benchmarks/results/cpu
  segzoo bench --models deeplabv3plus --backbones mobilenet_v2 resnet50 --batch 1 8 --deploy
  segzoo bench --models fcn8s deeplabv3plus --backbones mobilenet_v2 --batch 1 --deploy --onnxruntime
  segzoo bench --models unet --set base_channels=8 depth=2 --size 64 --repeats 1 --no-peers
  segzoo bench --device cuda --dtype bf16 --deploy --no-train --in-process --out bench_gpu
  segzoo bench --device cuda --models maskrcnn --batch 1 --deploy --deploy-dtype bf16 \
      --deploy-compile reduce-overhead --peers maskrcnn --no-train --in-process

exit status: 0 when every measurement ran; 1 when any failed (a model that does not build, a
worker that crashed or timed out, a deploy check that did not hold): the other rows are still
measured and written, and the failed ones are listed on stderr and named in bench.md; 2 on a bad
option (an unknown model, dtype or compile mode, no CUDA device).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed benchmark: params, GFLOPs, latency, memory, peers",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["all"], help="registered model names, 'all', or 'none' (only the --peers pairs)")
    p.add_argument("--backbones", nargs="+", help="benchmark each model with each of these backbones")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE", default=[],
                   help="builder keyword arguments (YAML values), given to the models that take them")
    p.add_argument("--size", nargs="+", type=int, default=[512], metavar="H [W]", help="input size")
    p.add_argument("--instance-size", nargs=2, type=int, default=[800, 1333], metavar=("H", "W"),
                   help="input size of instance models (Mask R-CNN)")
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8], help="inference batch sizes")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="autocast dtype (bf16 on CPU or GPU; fp16 on GPU)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    p.add_argument("--large-batch-repeats", type=int, help="timed runs at batches > 1 (default --repeats)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    p.add_argument("--train-batch", type=int, default=2, help="batch of the training-step timing")
    p.add_argument("--train-repeats", type=int, help="timed training steps (default --repeats)")
    p.add_argument("--no-train", action="store_true", help="skip the training-step timing")
    p.add_argument("--deploy", action="store_true",
                   help="also time deploy mode (conv+BN fused, channels_last) against eager")
    p.add_argument("--deploy-dtype", choices=["fp32", "bf16", "fp16"],
                   help="autocast dtype of the deploy variant only (default: --dtype), e.g. bf16 "
                        "deploy against fp32 eager and peers")
    p.add_argument("--deploy-compile", metavar="MODE",
                   help="torch.compile the deploy variant: default, reduce-overhead (CUDA graphs), "
                        "max-autotune, ... or backend:<name> (a detector: its backbone); compile time "
                        "is not timed")
    p.add_argument("--onnxruntime", action="store_true",
                   help="also time the model exported to ONNX and run by onnxruntime (CPU, as many "
                        "threads as torch) against eager, batch 1 (needs segzoo[onnx])")
    p.add_argument("--peers", nargs="+", default=["all"],
                   help="peer pairs to run (substrings of their names, or 'all')")
    p.add_argument("--no-peers", action="store_true", help="skip the torchvision/smp comparisons")
    p.add_argument("--peer-batch", type=int, default=1, help="batch of the peer comparisons")
    p.add_argument("--threads", type=int, help="torch threads in every worker (default: torch's)")
    p.add_argument("--num-classes", type=int, default=21)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    p.add_argument("--in-process", action="store_true",
                   help="run every measurement in this process instead of a fresh worker each "
                        "(saves the interpreter and CUDA start-up per job; peak RSS is then the run's, "
                        "peak CUDA memory stays per job)")
    p.add_argument("--matmul-size", type=int, help="side of the matmul that measures GFLOP/s "
                   "(default 2048 on CPU, 8192 on CUDA)")
    p.add_argument("--out", default="bench_results", help="output folder (bench.json, bench.md)")
    p.set_defaults(func=cmd_bench)


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SegzooError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def cmd_bench(args: argparse.Namespace) -> int:
    from segzoo.bench.report import failures
    from segzoo.bench.runner import BenchSettings, run_benchmark

    if len(args.size) not in (1, 2):
        raise SegzooError("--size takes H or H W")
    size = (args.size[0], args.size[-1])
    settings = BenchSettings(
        models=args.models, backbones=args.backbones, model_kwargs=parse_set(args.set), size=size,
        instance_size=tuple(args.instance_size), batches=args.batch, device=args.device,
        dtype=args.dtype, warmup=args.warmup, repeats=args.repeats,
        large_batch_repeats=args.large_batch_repeats, train=not args.no_train,
        train_batch=args.train_batch, train_repeats=args.train_repeats, deploy=args.deploy,
        deploy_dtype=args.deploy_dtype, deploy_compile=args.deploy_compile,
        onnxruntime=args.onnxruntime,
        peers=[] if args.no_peers else args.peers, peer_batch=args.peer_batch, threads=args.threads,
        num_classes=args.num_classes, timeout=args.timeout, matmul_size=args.matmul_size,
        in_process=args.in_process,
        command="segzoo " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"]
        else "segzoo bench (Python API)")
    results = run_benchmark(settings, args.out, log=lambda line: print(line, flush=True))
    print(f"wrote {args.out}/bench.json and {args.out}/bench.md")
    failed = failures(results)
    if failed:  # the finished rows are written; the exit status tells scripts that some are not
        print(f"segzoo bench: {len(failed)} measurement(s) failed (their rows in bench.md say so):",
              *(f"  {line}" for line in failed), sep="\n", file=sys.stderr)
        return 1
    return 0
