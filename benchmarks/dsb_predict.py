"""Every trained run of a nuclei protocol on one crowded val image: the figure of each model's
instances, and each model's CPU latency from image to instances.

    python benchmarks/dsb_predict.py                         # dsb2018-cpu, the most crowded val image
    python benchmarks/dsb_predict.py --image <stem> --repeats 7 --threads 1

For each result JSON of ``benchmarks/results/protocols/<protocol>/`` the run's ``config.yaml`` and
``checkpoints/last.pt`` (the weights it was scored with) are loaded. A semantic model's instances
are made exactly as the evaluation makes them (:meth:`segzoo.evaluation.evaluator.Scorer.decode`:
connected components, or contour decoding), Mask R-CNN's are its detections from
``eval.score_threshold``; both become an id map (:func:`segzoo.metrics.nuclei.id_map_from_masks`).

* Figure ``docs/img/dsb2018_crowded.png``: the image, the ground truth and each model's id map at
  the image's original size, one colour per object, titled with its DSB score on that image and
  the number of merged nuclei.
* ``latency.json`` in the results folder: per model, the median seconds of image (256x256, as the
  protocol feeds it) -> id map at the model's input size (forward + decoding), batch 1, all models in
  one process, interleaved rounds (:func:`segzoo.bench.timing.run_interleaved`), trained weights
  (Mask R-CNN's cost depends on how many nuclei it finds), and the GFLOPs of that forward on that
  image (``FlopCounterMode``; for Mask R-CNN the count of its RoI heads depends on the detections,
  so it is counted here, where the semantic models' count equals the protocol's 256x256 one).
  ``dsb_report`` shows both.

One run per model: its lowest seed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def load_runs(results_dir: Path):
    """(result, cfg, model) of each model's finished run of the lowest seed, semantic ones first."""
    from compare_report import load_results

    from segzoo.checkpoint.trained_model import load_trained_model
    from segzoo.config import load_config

    first: dict[str, dict] = {}
    for r in sorted(load_results(results_dir), key=lambda r: r["seed"]):
        first.setdefault(r["model"], r)
    runs = []
    for r in sorted(first.values(), key=lambda r: (r.get("task") == "instance", r["model"])):
        wd = REPO / r["work_dir"]
        cfg = load_config(wd / "config.yaml")
        model, _ = load_trained_model(cfg, wd / "checkpoints" / "last.pt")
        runs.append((r, cfg, model.eval()))
    return runs


def predictor(cfg, model, dataset):
    """A function sample -> id map (numpy, at the model's input size) for one run."""
    import torch

    from segzoo.evaluation.evaluator import Scorer
    from segzoo.inference.checks import model_task
    from segzoo.metrics.nuclei import id_map_from_masks

    scorer = Scorer(num_classes=dataset.num_classes, ignore_index=cfg.data.ignore_index, eval_cfg=cfg.eval,
                    thing_classes=dataset.things(), contour_class=getattr(dataset, "contour_class", None))
    instance = model_task(model) == "instance"

    @torch.inference_mode()
    def predict(image):
        if instance:
            pred = model([image])[0]
            return id_map_from_masks(pred["masks"], pred["scores"], score_threshold=scorer.score_threshold)
        logits = model(image[None])
        logits = logits["out"] if isinstance(logits, dict) else logits
        pred = scorer.decode(logits[0])
        return id_map_from_masks(pred["masks"], pred["scores"])

    return predict


def crowded_index(dataset, max_pixels: int) -> int:
    """The val image with the most nuclei among those of at most ``max_pixels`` pixels."""
    from PIL import Image

    best, best_n = 0, -1
    for i, (image_path, label_path) in enumerate(dataset.pairs):
        with Image.open(image_path) as im:
            if im.width * im.height > max_pixels:
                continue
        import numpy as np

        n = len(np.unique(np.asarray(Image.open(label_path)))) - 1
        if n > best_n:
            best, best_n = i, n
    return best


def colour(ids):
    import numpy as np

    rng = np.random.default_rng(1)
    lut = np.concatenate([[[0, 0, 0]], rng.integers(60, 256, (int(ids.max()) + 1, 3))]).astype(np.uint8)
    return lut[ids]


def figure(image, gt, panels, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiles = [("image", image), ("ground truth", colour(gt))] + [(t, colour(ids)) for t, ids in panels]
    cols = 4
    rows = (len(tiles) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (t, img) in zip(axes.ravel(), tiles):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(t, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="dsb2018-cpu")
    p.add_argument("--results-dir", type=Path)
    p.add_argument("--image", help="val image stem (default: the most crowded of at most --max-pixels)")
    p.add_argument("--max-pixels", type=int, default=520 * 696)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--figure", type=Path, default=REPO / "docs" / "img" / "dsb2018_crowded.png")
    args = p.parse_args(argv)

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from segzoo.bench.machine import cpu_model, load_average
    from segzoo.bench.timing import run_interleaved, summarize
    from segzoo.builders import dataset_from_split, instance_target_options
    from segzoo.evaluation.evaluator import prepare_eval_dataset
    from segzoo.metrics.nuclei import dsb_image_ap, gt_id_map, merged_instances

    torch.set_num_threads(args.threads)
    results_dir = args.results_dir or REPO / "benchmarks" / "results" / "protocols" / args.protocol
    runs = load_runs(results_dir)
    if not runs:
        raise SystemExit(f"dsb_predict.py: no results in {results_dir}")
    panels, steps, names, gflops = [], [], [], {}
    for r, cfg, model in runs:
        ds = dataset_from_split(cfg, cfg.data.val, **instance_target_options(cfg.data.val))
        prepare_eval_dataset(ds, True)
        names_in = [pair[0].stem for pair in ds.pairs]
        index = names_in.index(args.image) if args.image else crowded_index(ds, args.max_pixels)
        args.image = names_in[index]
        sample = ds[index]
        meta = sample["meta"]
        size = tuple(meta.get("orig_mask", sample["mask"]).shape[-2:])
        gt = gt_id_map(meta.get("orig_instances") or sample["instances"], size)
        predict = predictor(cfg, model, ds)
        counter = FlopCounterMode(display=False)
        with counter:  # the figure's forward is also the one whose FLOPs are counted
            ids = predict(sample["image"])
        gflops[r["model"]] = counter.get_total_flops() / 1e9
        ids = F.interpolate(torch.from_numpy(ids)[None, None].float(), size=size, mode="nearest")[0, 0].long().numpy()
        ap, merged = dsb_image_ap(ids, gt), merged_instances(ids, gt)
        panels.append((f"{r['model'].replace('_mobilenetv2', '')}: {len(np.unique(ids)) - 1} nuclei, "
                       f"DSB {100 * ap:.0f}, {merged} merged", ids))
        steps.append(lambda predict=predict, image=sample["image"]: predict(image))
        names.append(r["model"])
        print(f"{r['model']}: {len(np.unique(ids)) - 1} objects (ground truth {len(np.unique(gt)) - 1}), "
              f"DSB score {ap:.3f}, merged {merged}")
    from PIL import Image

    image = np.asarray(Image.open(ds.pairs[index][0]).convert("RGB"))
    figure(image, gt, panels, args.figure,
           f"{args.protocol}, val image {args.image} ({size[1]}x{size[0]}, {len(np.unique(gt)) - 1} nuclei)")
    print(f"figure: {args.figure}")

    before, start = load_average(), time.time()
    times = run_interleaved(steps, warmup=args.warmup, repeats=args.repeats, device=torch.device("cpu"))
    models = {}
    for name, ts in zip(names, times):
        s = summarize([1000 * t for t in ts])
        models[name] = {"latency_ms": round(s["median"], 2), "p25_ms": round(s["p25"], 2),
                        "p75_ms": round(s["p75"], 2), "n": s["n"], "gflops": round(gflops[name], 3)}
        print(f"  {name}: {s['median']:.1f} ms")
    out = {"protocol": args.protocol, "what": "image (256x256) -> instance id map: forward + decoding",
           "image": args.image, "batch": 1, "threads": args.threads, "repeats": args.repeats,
           "warmup": args.warmup, "weights": "trained (checkpoints/last.pt)", "machine": cpu_model(),
           "torch": torch.__version__, "load_average": {"before": before, "after": load_average()},
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "wall_s": round(time.time() - start, 1), "models": models}
    (results_dir / "latency.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"latency: {results_dir / 'latency.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
