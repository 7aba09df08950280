"""Model rules on scores and detections: non-finite outputs (and the checks they leave
unjudged), background and calibration collapse, the false-positive flood."""

from __future__ import annotations

from typing import Any

from convdiag.diagnosis.findings import Finding, Remedy
from convdiag.diagnosis.rules_common import (
    SIGNAL_REMEDIES,
    Ctx,
    advice,
    coarser_level,
    ev,
    level_change,
    nonfinite_remedies,
    num,
    pct,
    signal_remedies,
)


def nonfinite(c: Ctx) -> Finding | None:
    o = c.res["outputs"]
    fc, fr = o["cls_nonfinite_fraction"] or 0.0, o["reg_nonfinite_fraction"] or 0.0
    if fc <= c.th.nonfinite_max and fr <= c.th.nonfinite_max:
        return None
    return Finding(
        "non-finite-outputs",
        c.level,
        ev(
            cls_nonfinite=o["cls_nonfinite"],
            cls_nonfinite_fraction=fc,
            reg_nonfinite=o["reg_nonfinite"],
            reg_nonfinite_fraction=fr,
            nonfinite_max=c.th.nonfinite_max,
        ),
        f"{o['cls_nonfinite']:,} classification and {o['reg_nonfinite']:,} offset outputs at "
        f"{c.level} are NaN or infinite, so every other number of this level is unreliable. "
        "Training diverged or the inputs are out of range: lower the learning rate, cap the "
        "loss weight and check the input scaling.",
        nonfinite_remedies(),
    )


# Checks that read the classification scores / the offsets of a level: with non-finite
# values there (replaced by 0 / 0.5 in the pass) their numbers are no evidence.
SCORE_CHECKS = (
    "dead-network",
    "label-shift",
    "background-collapse",
    "calibration-collapse",
    "fp-flood",
    "gradient-starvation",
    "head-imbalance",
)
OFFSET_CHECKS = ("offset-head-untrained", "regression-collapse", "label-quantization")


def suppressed_checks(c: Ctx) -> tuple[str, ...]:
    """The finding ids not judged at this level because its outputs are non-finite:
    every score check when classification outputs are, the offset checks (and the head
    balance) when offsets are; () when neither crosses ``nonfinite_max``."""
    o = c.res["outputs"]
    fc, fr = o["cls_nonfinite_fraction"] or 0.0, o["reg_nonfinite_fraction"] or 0.0
    out: list[str] = []
    if fc > c.th.nonfinite_max:
        out += SCORE_CHECKS
    if fr > c.th.nonfinite_max:
        out += [k for k in (*OFFSET_CHECKS, "head-imbalance") if k not in out]
    return tuple(out)


def not_judged(c: Ctx, checks: tuple[str, ...]) -> Finding:
    """The info finding that lists the checks left out at a level with non-finite outputs."""
    o = c.res["outputs"]
    return Finding(
        "not-judged",
        c.level,
        ev(
            checks=list(checks),
            cls_nonfinite_fraction=o["cls_nonfinite_fraction"],
            reg_nonfinite_fraction=o["reg_nonfinite_fraction"],
        ),
        f"At {c.level} {', '.join(checks)} could not be judged: they rest on outputs of "
        f"which {pct(o['cls_nonfinite_fraction'])} (scores) and "
        f"{pct(o['reg_nonfinite_fraction'])} (offsets) are NaN or infinite, so their numbers "
        "are no evidence. Fix the non-finite outputs and analyse again.",
    )


def collapse(c: Ctx) -> list[Finding]:
    m, th = c.m, c.th
    f1 = m["f1_at_threshold"]
    fp = m["fp_per_image_at_threshold"]
    auc, low = m["auc"], m["best_f1_low"]
    thr = c.res["detections"]["threshold"]
    prec = c.res["detections"]["precision_at_threshold"]
    failed = f1 is not None and f1 < th.f1_min
    out: list[Finding] = []
    base = ev(
        f1_at_threshold=f1,
        threshold=thr,
        f1_min=th.f1_min,
        auc=auc,
        auc_min=th.auc_min,
        best_f1_low=low,
        best_threshold_low=m["best_threshold_low"],
        peaks_above_threshold=m["peaks_above_threshold"],
        calibration_peak_share=th.calibration_peak_share,
        fp_per_image=fp,
        peak_score_p50=m["peak_score_p50"],
        mean_score=m["mean_score"],
        label_prior=m["label_prior"],
        loss_ratio=m["loss_ratio"],
    )
    flood = fp is not None and fp > th.fp_per_image_max
    if flood and (failed or (prec is not None and prec < th.precision_max_flood)):
        out.append(fp_flood(c, base, fp, prec))
        return out
    ranking = auc is not None and auc >= th.auc_min and low is not None and low >= th.f1_min
    peaks = m["peaks_above_threshold"]
    under = (
        peaks is not None
        and peaks < th.calibration_peak_share
        and low is not None
        and f1 is not None
        and f1 < th.calibration_f1_share * low
    )
    if not (failed or (ranking and under)):
        return out
    rems_all = SIGNAL_REMEDIES
    if ranking:
        rem = signal_remedies(c, ("pos-weight", "focal-loss", "soft-labels", "loss-ramp"))
        out.append(
            Finding(
                "calibration-collapse",
                c.level,
                base,
                f"At {c.level} the model ranks targets above background (AUC {auc:.3f}, "
                f"F1 {low:.2f} at threshold {m['best_threshold_low']:g}) but its target peaks "
                f"(median {num(m['peak_score_p50'])}; {pct(peaks)} reach {thr:g}) stay below "
                f"the threshold, so F1 at {thr:g} "
                f"is {f1:.2f}. The signal is there and the scores are pinned low by the "
                "imbalanced loss; lift them (or lower the threshold) rather than relearn.",
                rem,
            )
        )
        return out
    coarse = coarser_level(c.level, c.stats, th)
    rem = signal_remedies(c, rems_all)
    rem += level_change(
        c,
        coarse,
        f"{coarse} has <= 1,000 negatives per positive "
        "(classification works there; offsets must then localise)",
    )
    rem.append(
        advice(
            "spatial-attention",
            f"spatial attention before {c.level} helps a "
            "dim target stand out from clutter (seed); AUC " + num(auc),
        )
    )
    out.append(
        Finding(
            "background-collapse",
            c.level,
            base,
            f"At {c.level} the model predicts background everywhere: F1 {f1:.2f} at {thr:g}, "
            f"target peaks median {num(m['peak_score_p50'])} against a label prior of "
            f"{num(m['label_prior'])}, cls loss {num(m['loss_ratio'])}x the constant "
            f"predictor's, ranking AUC {num(auc)}. With "
            f"{num(c.lstats.get('neg_per_pos'))} negatives per positive the loss is "
            "minimised by the all-background answer, so the few target cells never win.",
            rem,
        )
    )
    return out


def fp_flood(c: Ctx, base: dict[str, Any], fp: float, prec: float | None) -> Finding:
    h = c.res["detections"]["histograms"]
    near = h["fp_near_miss"] + h["fp_duplicate"]
    bg = h["fp_background"]
    evd = dict(base)
    evd.update(
        ev(
            precision=prec,
            precision_max_flood=c.th.precision_max_flood,
            fp_per_image_max=c.th.fp_per_image_max,
            fp_near_target=near,
            fp_background=bg,
        )
    )
    mostly_near = near > bg
    rem: list[Remedy] = []
    if mostly_near:
        rem += signal_remedies(c, ("soft-labels", "focal-loss"))
        cause = (
            f"{near} of them lie within 2r of a target (duplicates and near misses): "
            "the peaks are spread or misplaced around the targets"
        )
    else:
        rem += signal_remedies(c, ("focal-loss", "ohem", "soft-labels"))
        for r in rem:
            if r.id == "ohem":
                r.why = "keeps the hardest negatives, the clutter that fires; " + r.why
        cause = (
            f"{bg} of them lie farther than 2r from any target: background clutter "
            "scores like a target"
        )
    rem.append(
        advice(
            "spatial-attention", "spatial attention helps separate dim targets from clutter (seed)"
        )
    )
    return Finding(
        "fp-flood",
        c.level,
        evd,
        f"At {c.level} the model fires {fp:.1f} false positives per image at threshold "
        f"{base['threshold']:g} (precision {num(prec)}); {cause}. The detector is "
        "unusable at this threshold until the negatives that fire are suppressed.",
        rem,
    )
