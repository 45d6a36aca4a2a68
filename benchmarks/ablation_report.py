"""The papers' ablations on a protocol, from result JSONs only: the generated part of the section
"Paper ablations on camvid-cpu" of docs/comparison.md (``compare_report.update_doc`` calls
:func:`section` for a protocol named ``<base>-ablations``).

Each row of :data:`ABLATIONS` pairs a baseline with a variant, each found either among the base
protocol's results (``benchmarks/results/protocols/<base>/``) or the ablation protocol's
(``.../<base>-ablations/``, trained variants and inference-only ablations whose JSON carries its
own ``baseline`` numbers). The paper's claim is text (from ../shared/docs/architectures.md where it
states one); the verdict is computed from the numbers by :func:`verdict`: the sign of the
difference against the paper's expected sign, and whether the difference is below the
seed-to-seed standard deviation (then it is not a finding).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

METRICS = (("mIoU", "mIoU"), ("mBIoU", "boundary mIoU"))


@dataclass(frozen=True)
class Ablation:
    """``baseline``/``variant``: (``"base"`` or ``"ablations"``, model name). ``expected``: +1 when
    the paper says the variant is better, -1 worse, 0 when the paper makes no comparative claim.
    ``judged``: the metrics the verdict is given for."""

    name: str
    claim: str
    baseline: tuple[str, str]
    variant: tuple[str, str]
    expected: int
    judged: tuple[str, ...] = ("mIoU",)


ABLATIONS = (
    Ablation("FCN-32s -> FCN-16s (+ stride-16 skip)",
             "finer skips, better edges: FCN-32s 59.4 < FCN-16s 62.4 mean IU (VOC 2011 val)",
             ("base", "fcn32s_mobilenetv2"), ("base", "fcn16s_mobilenetv2"), +1, ("mIoU", "mBIoU")),
    Ablation("FCN-16s -> FCN-8s (+ stride-8 skip)",
             "FCN-16s 62.4 < FCN-8s 62.7 mean IU (VOC 2011 val): a smaller, diminishing gain",
             ("base", "fcn16s_mobilenetv2"), ("base", "fcn8s_mobilenetv2"), +1, ("mIoU", "mBIoU")),
    Ablation("DeepLab v3: ASPP with -> without image pooling",
             "image pooling (global context) is part of the paper's ASPP; its sec. 4.3 ablation "
             "finds it helps (figures not in our architecture reference)",
             ("base", "deeplabv3_mobilenetv2"), ("ablations", "deeplabv3_mobilenetv2_no-image-pool"), -1),
    Ablation("DeepLab v3: inference at OS 16 -> OS 8 (same weights)",
             "train at OS 16, infer at OS 8 with the ASPP rates doubled (12/24/36): the paper's "
             "better inference setting (figures not in our architecture reference)",
             ("inference", "deeplabv3_mobilenetv2_os8-inference"),
             ("ablations", "deeplabv3_mobilenetv2_os8-inference"), +1, ("mIoU", "mBIoU")),
    Ablation("(diagnostic) DeepLab v3: OS 16 -> OS 8, ASPP rates kept at 6/12/18",
             "not in the paper: the encoder's stride alone, to tell it from the rate doubling "
             "(`os_inference.py --rates 6 12 18`)",
             ("inference", "deeplabv3_mobilenetv2_os8-rates6-12-18-inference"),
             ("ablations", "deeplabv3_mobilenetv2_os8-rates6-12-18-inference"), 0, ("mIoU", "mBIoU")),
    Ablation("DeepLab v3 -> v3+ (decoder)",
             "the decoder recovers object boundaries lost at OS 16; v3 85.7 -> v3+ 89.0 mIoU (VOC "
             "2012 test, each paper's best model, not one controlled ablation)",
             ("base", "deeplabv3_mobilenetv2"), ("base", "deeplabv3plus_mobilenetv2"), +1, ("mIoU", "mBIoU")),
    Ablation("PSPNet: with -> without the auxiliary loss",
             "deep supervision (auxiliary FCN head on res4, weight 0.4, training only) helps "
             "(sec. 3.3; figures not in our architecture reference)",
             ("base", "pspnet_mobilenetv2"), ("ablations", "pspnet_mobilenetv2_no-aux"), -1),
    Ablation("U-Net (paper's encoder, width 16): same -> valid padding",
             "the paper uses valid convolutions (572 -> 388, mirrored context); no padding "
             "comparison is reported (the padded variant is what most users want)",
             ("ablations", "unet_w16-same"), ("ablations", "unet_w16-valid"), 0),
)


# The recipe itself (issue: "an ablation of the recipe"): the protocol's FCN-8s with one training
# choice changed at a time; baseline = the camvid-cpu FCN-8s runs (3 seeds).
RECIPE = (
    Ablation("median-frequency class weights -> plain cross-entropy",
             "SegNet trains CamVid with median-frequency class balancing so that the small classes "
             "count (Badrinarayanan et al., TPAMI 2017; figures not in our architecture reference)",
             ("base", "fcn8s_mobilenetv2"), ("ablations", "fcn8s_mobilenetv2_no-class-weights"), -1,
             ("mIoU", "mBIoU")),
    Ablation("random scale 0.5-2.0 -> none (whole 180x240 frame)",
             "random scaling 0.5-2 is part of the PSPNet and DeepLab training recipes (no ablation "
             "figure in our architecture reference)",
             ("base", "fcn8s_mobilenetv2"), ("ablations", "fcn8s_mobilenetv2_no-scale-aug"), -1),
    Ablation("+ OHEM (true-class probability < 0.7, >= 10000 pixels per image)",
             "hard-pixel mining as in mmsegmentation's OHEMPixelSampler (Shrivastava et al., CVPR "
             "2016, for boxes); no paper of this zoo claims a figure",
             ("base", "fcn8s_mobilenetv2"), ("ablations", "fcn8s_mobilenetv2_ohem"), 0),
    Ablation("evaluation input 180x240 -> full 360x480 (same weights)",
             "SegNet and most CamVid results run the network on the full 360x480 frame; the "
             "protocol runs it at half size and upsamples the logits (inference only: "
             "`os_inference.py --full-res`)",
             ("inference", "fcn8s_mobilenetv2_full-res-inference"),
             ("ablations", "fcn8s_mobilenetv2_full-res-inference"), 0, ("mIoU", "mBIoU")),
    Ablation("+ EMA of the weights (decay 0.999) for evaluation",
             "weight averaging; no paper of this zoo claims a figure",
             ("base", "fcn8s_mobilenetv2"), ("ablations", "fcn8s_mobilenetv2_ema"), 0),
)


def _std(xs: list[float]) -> float | None:
    return statistics.stdev(xs) if len(xs) > 1 else None


def side(results: dict[str, list[dict]], where: tuple[str, str]) -> dict[int, dict]:
    """seed -> metrics (fractions) of one side of an ablation. ``("inference", model)`` is the
    ``baseline`` block of the inference-ablation JSONs of ``model``."""
    kind, model = where
    if kind == "inference":
        return {r["seed"]: r["baseline"]["metrics"] for r in results["ablations"] if r["model"] == model}
    return {r["seed"]: r["metrics"] for r in results[kind] if r["model"] == model}


def compare(base: dict[int, dict], var: dict[int, dict], metric: str) -> dict | None:
    """Baseline and variant of one metric: means, sample stds and seeds of each side; ``diff``
    (variant - baseline, paired over the common seeds when there are any, else of the means);
    ``paired_seeds``; ``noise`` (the larger seed-to-seed std of the two sides, None with one seed
    per side); ``same_sign`` (every paired seed moves the same way, None with under 2 pairs)."""
    b = {s: m[metric] for s, m in base.items() if m.get(metric) is not None}
    v = {s: m[metric] for s, m in var.items() if m.get(metric) is not None}
    if not b or not v:
        return None
    common = sorted(set(b) & set(v))
    diffs = [v[s] - b[s] for s in common]
    diff = statistics.fmean(diffs) if common else statistics.fmean(v.values()) - statistics.fmean(b.values())
    stds = [s for s in (_std(list(b.values())), _std(list(v.values()))) if s is not None]
    same_sign = (all(d > 0 for d in diffs) or all(d < 0 for d in diffs)) if len(diffs) > 1 else None
    return {"base": statistics.fmean(b.values()), "base_std": _std(list(b.values())), "base_seeds": sorted(b),
            "var": statistics.fmean(v.values()), "var_std": _std(list(v.values())), "var_seeds": sorted(v),
            "diff": diff, "paired_seeds": common, "noise": max(stds) if stds else None, "same_sign": same_sign}


def verdict(c: dict, expected: int, label: str = "mIoU", ref_std: float | None = None) -> str:
    """One sentence on agreement, from the numbers of :func:`compare` alone (percent points).

    ``expected`` +1/-1: the paper's sign of variant - baseline; 0: no claim. A difference whose
    size is below the seed-to-seed std (``c["noise"]``) is "not a finding". A side with one seed
    has no spread of its own: then ``ref_std`` (the protocol's typical seed-to-seed std) is the
    yardstick where it is larger, and a difference above it is only "tentative"."""
    d = 100 * c["diff"]
    text = f"{label} {d:+.1f}"
    if d == 0:
        return f"{text}: no difference."
    sign = 1 if d > 0 else -1
    direction = ("the variant is better" if sign > 0 else "the variant is worse")
    if expected == 0:
        agree = f"{direction}; the paper makes no comparative claim"
    else:
        agree = ("agrees with the paper" if sign == expected else "disagrees with the paper") + f" ({direction})"
    single = min(len(c.get("base_seeds", [0])), len(c.get("var_seeds", [0]))) < 2
    noise, basis = c["noise"], "the seed-to-seed std"
    if single and ref_std is not None and (noise is None or ref_std > noise):
        noise, basis = ref_std, "the protocol's typical seed-to-seed std"
    if noise is None:
        return f"{text}: {agree}; one seed per side, no seed-to-seed std to judge it against."
    yardstick = f"{basis} ({100 * noise:.1f})"
    if abs(d) < 100 * noise:
        return (f"{text} is below {yardstick}: not a finding"
                + (f" (its sign {'would agree' if sign == expected else 'would disagree'} with the paper)."
                   if expected else "."))
    tail = ""
    if c["same_sign"] is not None:
        tail = (f", same sign on all {len(c['paired_seeds'])} paired seeds" if c["same_sign"]
                else ", but the sign differs between the paired seeds")
    if single:
        tail += "; one side rests on one seed, so a tentative finding"
    return f"{text}: {agree}; above {yardstick}{tail}."


def typical_std(base_results: list[dict], metric: str = "mIoU") -> float | None:
    """Median over the base protocol's models with >= 2 seeds of their seed-to-seed std."""
    groups: dict[str, list[float]] = {}
    for r in base_results:
        if r.get("metrics", {}).get(metric) is not None:
            groups.setdefault(r["model"], []).append(r["metrics"][metric])
    stds = [statistics.stdev(v) for v in groups.values() if len(v) > 1]
    return statistics.median(stds) if stds else None


def _cell(mean: float, std: float | None, seeds: list[int]) -> str:
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "") + f" ({len(seeds)})"


def _delta(c: dict) -> str:
    """Δ in percent points; names the paired seeds when a side has seeds the other lacks."""
    text = f"{100 * c['diff']:+.1f}"
    if c["paired_seeds"] and not c["paired_seeds"] == c["base_seeds"] == c["var_seeds"]:
        text += f" (paired: seed {','.join(map(str, c['paired_seeds']))})"
    return text


def section(results: dict[str, list[dict]], base_name: str) -> str:
    """The generated part of the ablation section: the papers' ablation table, then the recipe's."""
    return (table(results, base_name) + "\n\n**The recipe itself** (FCN-8s, one training choice "
            "changed at a time; baseline: the `" + base_name + "` FCN-8s runs):\n\n"
            + table(results, base_name, RECIPE, claim_head="claim (source)", explain=False)
            + "\n\nRead as the table above (same columns and yardstick).")


def table(results: dict[str, list[dict]], base_name: str, ablations: tuple[Ablation, ...] = ABLATIONS,
          claim_head: str = "paper's claim", explain: bool = True) -> str:
    """The Markdown of an ablation table (default: the papers') and, with ``explain``, the notes
    that say how to read it; ``results`` has ``"base"`` and ``"ablations"`` lists of result JSONs."""
    ref = {k: typical_std(results["base"], k) for k, _ in METRICS}
    head = ["ablation (baseline -> variant)", claim_head, "seeds (baseline / variant)"]
    for _, label in METRICS:
        head += [f"{label}: baseline", f"{label}: variant", f"{label}: Δ"]
    head.append("agreement (computed)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pending = []
    for a in ablations:
        base, var = side(results, a.baseline), side(results, a.variant)
        cs = {k: compare(base, var, k) for k, _ in METRICS}
        if cs["mIoU"] is None:
            pending.append(a.name)
            continue
        cells = [a.name, a.claim, f"{','.join(map(str, cs['mIoU']['base_seeds']))} / "
                 f"{','.join(map(str, cs['mIoU']['var_seeds']))}"]
        for k, _ in METRICS:
            c = cs[k]
            cells += (["–"] * 3 if c is None else
                      [_cell(c["base"], c["base_std"], c["base_seeds"]), _cell(c["var"], c["var_std"], c["var_seeds"]),
                       _delta(c)])
        cells.append(" ".join(verdict(cs[k], a.expected, label, ref[k]) for k, label in METRICS
                              if k in a.judged and cs[k] is not None))
        lines.append("| " + " | ".join(cells) + " |")
    notes = [] if not explain else ["", "Percent; mean ± sample std over seeds (number of seeds in brackets). Δ is variant - "
             "baseline, paired over the seeds both sides have where there are any. The agreement "
             "column is computed from these numbers: the sign of Δ against the paper's, and a "
             "difference smaller than the larger seed-to-seed std of the two sides is not a finding; "
             "where a side has one seed, the yardstick is at least the median seed-to-seed std of the "
             f"multi-seed `{base_name}` models"
             + (f" ({100 * ref['mIoU']:.1f} mIoU, {100 * ref['mBIoU']:.1f} boundary mIoU)"
                if ref["mIoU"] is not None and ref["mBIoU"] is not None else "")
             + ", and a difference above it that rests on a single seed is only tentative."]
    if pending:
        notes.append("")
        notes.append("Not run yet (no result JSON on one side): " + "; ".join(pending) + ".")
    return "\n".join(lines + notes)
