"""Symptoms found over time in a training log, as ``Finding``s that say when each started.

First the run checks of ``log_rules_run`` (validation-off, single-class-cls-loss) decide
which series are evidence; a log too short for the rules gets too-short, never healthy.

Every rule looks at the end of the run: a condition that holds from some point to the last
value (the *stretch*) for at least ``min_points`` logged values. ``started_at`` is the
step (or epoch) where that stretch begins. Windows are the first and last quarter of a
stretch (at least one value each) compared by their medians, so per-step noise does not
decide; losses compared with a reference are smoothed by a trailing median of 5 values
(the stretch then starts where the raw values entered the margin).

- non-finite-outputs: any NaN or Inf in a mapped series (started at the first one).
- loss-plateau (warning): a loss equal to 6 decimals for ``plateau_points`` values in a row
  (exactly 0 for an auxiliary loss: no positive reaches it).
- background-collapse: F1 (else recall/Pd, else mAP, else IoU/nIoU) below ``f1_min`` over
  the stretch (recall too, when F1 is the metric), with the loss falling or not; or, without any
  detection metric, the classification loss within ``margin`` of the best constant
  predictor's loss over the stretch.
- fp-flood: FP per image above ``fp_per_image_max`` over the stretch and falling by less
  than ``fp_fall_min``; without an FP column, precision under ``precision_max_flood`` not
  rising while recall stays at or above ``f1_min``. As in ``analyze``, a flood replaces
  background-collapse (a model that fires everywhere but at the targets is not quiet).
- regression-collapse: the offset loss within ``reg_margin`` of the mean predictor's value
  and flat (changing by less than ``reg_flat_max``) over the stretch; a warning where the
  cell centre is already close enough (DESIGN.md: offsets matter when the cell-centre RMS
  error exceeds 0.6 x the match radius).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convdiag.diagnosis.findings import Finding, Remedy
from convdiag.diagnosis.remedy_catalogue import (
    defaults,
)
from convdiag.diagnosis.thresholds import Thresholds
from convdiag.watch.log_rules_basic import non_finite, plateaus
from convdiag.watch.log_rules_common import (
    Reference,
    at,
    ends,
    finite,
    rel_drop,
    signal_remedies,
    stays_from,
    trailing_median,
)
from convdiag.watch.log_rules_common import (
    ev as evid,
)
from convdiag.watch.log_rules_run import single_class, too_short, validation_off
from convdiag.watch.mapping import MappedLog
from convdiag.watch.table import Series

# --------------------------------------------------------------------------- rules


def _stretch(x: np.ndarray, cond: np.ndarray, th: Thresholds) -> int | None:
    i0 = stays_from(cond)
    if i0 is None or len(cond) - i0 < th.min_points:
        return None
    return i0


def _loss_fall(m: MappedLog, x0: float) -> dict[str, Any]:
    """How the loss (else the cls loss) changed from ``x0`` to the end."""
    key = "loss" if "loss" in m.series else ("cls_loss" if "cls_loss" in m.series else None)
    if key is None:
        return {"loss_series": None}
    x, v = finite(m.series[key])
    sel = v[x >= x0]
    if len(sel) < 4:
        sel = v
    if len(sel) < 2:
        return {"loss_series": key}
    a, b = ends(sel)
    return {"loss_series": key, "loss_first": a, "loss_last": b, "loss_drop": rel_drop(a, b)}


def _at_constant(
    s: Series | None, c: float | None, margin: float, th: Thresholds
) -> tuple[int | None, np.ndarray, np.ndarray]:
    """Start index of the final stretch where the smoothed s / c is within margin of 1."""
    if s is None or c is None or c <= 0:
        return None, np.zeros(0), np.zeros(0)
    x, v = finite(s)
    if len(v) == 0:
        return None, x, v
    raw = np.abs(v / c - 1.0) <= margin
    i0 = _stretch(x, np.abs(trailing_median(v / c, th.smooth) - 1.0) <= margin, th)
    while i0 is not None and i0 > 0 and raw[i0 - 1]:
        i0 -= 1  # the smoothing lags: start where the raw values entered the margin
    return i0, x, v


def collapse(m: MappedLog, ref: Reference, axis: str, th: Thresholds) -> list[Finding]:
    """background-collapse (see the module docstring)."""
    metric = next((k for k in ("f1", "recall", "map", "iou", "niou") if k in m.series), None)
    stuck_at: float | None = None
    ev: dict[str, Any] = {}
    if metric is not None:
        x, v = finite(m.series[metric])
        i0 = _stretch(x, v < th.f1_min, th)
        if i0 is None:
            return []
        if metric == "f1" and "recall" in m.series:
            xr, vr = finite(m.series["recall"])
            tail = vr[xr >= x[i0]]
            if len(tail) and ends(tail)[1] >= th.f1_min:
                return []  # targets are found, precision fails: fp-flood's case
        stuck_at = float(x[i0])
        ev.update(
            metric=metric,
            metric_column=m.columns.get(metric),
            metric_max=float(v[i0:].max()),
            metric_last=float(v[-1]),
            f1_min=th.f1_min,
            evaluations=len(v) - i0,
        )
    j0, xc, vc = _at_constant(m.series.get("cls_loss"), ref.constant_loss, th.loss_margin, th)
    const_at = float(xc[j0]) if j0 is not None else None
    if stuck_at is None and const_at is None:
        return []
    starts = [s for s in (stuck_at, const_at) if s is not None]
    started = min(starts)
    fall = _loss_fall(m, stuck_at if stuck_at is not None else started)
    ev.update({k: v for k, v in fall.items()})
    if ref.constant_loss is not None and len(vc):
        ratio_last = ends(vc)[1] / ref.constant_loss
        ev.update(
            cls_loss_last=ends(vc)[1],
            constant_loss=ref.constant_loss,
            loss_ratio=ratio_last,
            margin=th.loss_margin,
            cls_at_constant_from=const_at,
            prior=ref.prior,
        )
    ev.update(started_at=started, axis=axis)
    parts = []
    if stuck_at is not None:
        parts.append(
            f"{m.columns.get(metric or '', metric)} stayed below {th.f1_min:g} from "
            f"{at(axis, stuck_at)} to the end ({ev['evaluations']} evaluations, last "
            f"{ev['metric_last']:.3g})"
        )
        drop = fall.get("loss_drop")
        if drop is not None and drop >= th.loss_fall_min:
            parts[-1] += (
                f" while the {fall['loss_series']} fell {drop:.0%} "
                f"({fall['loss_first']:.4g} -> {fall['loss_last']:.4g})"
            )
        elif drop is not None:
            parts[-1] += f" and the {fall['loss_series']} did not fall (change {-drop:+.0%})"
    else:
        parts.append("no detection metric is logged")
    if const_at is not None:
        parts.append(
            f"the cls loss sits at {ev['loss_ratio']:.2f}x the constant predictor's "
            f"{ref.constant_loss:.4g} from {at(axis, const_at)} ("
            + (f"prior {ref.prior:.3g}, " if ref.prior is not None else "")
            + f"{ref.constant_source})"
        )
    npp = f"{ref.neg_per_pos:,.0f}" if ref.neg_per_pos else "thousands of"
    where = f" at {ref.level}" if ref.level else ""
    text = (
        f"Background collapse{where} from {at(axis, started)}: "
        + "; ".join(parts)
        + f". The model learns the background, not the targets: with {npp} negatives per "
        "positive the loss is minimised by predicting background everywhere."
    )
    return [Finding("background-collapse", ref.level, evid(**ev), text, signal_remedies(ref))]


def fp_flood(m: MappedLog, axis: str, th: Thresholds) -> list[Finding]:
    """fp-flood (see the module docstring)."""
    if "fp" in m.series:
        x, v = finite(m.series["fp"])
        i0 = _stretch(x, v > th.fp_per_image_max, th)
        if i0 is None:
            return []
        a, b = ends(v[i0:])
        drop = rel_drop(a, b) or 0.0
        if drop >= th.fp_fall_min:
            return []
        ev = evid(
            fp_first=a,
            fp_last=b,
            fp_drop=drop,
            fp_per_image_max=th.fp_per_image_max,
            fp_fall_min=th.fp_fall_min,
            evaluations=len(v) - i0,
            started_at=float(x[i0]),
            axis=axis,
        )
        what = (
            f"{b:.1f} false positives per image at the end (above {th.fp_per_image_max:g} "
            f"from {at(axis, float(x[i0]))}), {a:.1f} at the start of that stretch: "
            f"they fell {drop:.0%}, less than {th.fp_fall_min:.0%}"
        )
    elif "precision" in m.series and "recall" in m.series:
        x, v = finite(m.series["precision"])
        i0 = _stretch(x, v < th.precision_max_flood, th)
        if i0 is None:
            return []
        a, b = ends(v[i0:])
        xr, vr = finite(m.series["recall"])
        tail = vr[xr >= x[i0]]
        if len(tail) == 0 or ends(tail)[1] < th.f1_min or b - a >= th.precision_rise_min:
            return []
        rec = ends(tail)[1]
        ev = evid(
            precision_first=a,
            precision_last=b,
            recall_last=rec,
            precision_max_flood=th.precision_max_flood,
            evaluations=len(v) - i0,
            started_at=float(x[i0]),
            axis=axis,
        )
        what = (
            f"precision stayed under {th.precision_max_flood:g} from "
            f"{at(axis, float(x[i0]))} ({a:.2f} -> {b:.2f}) while recall is {rec:.2f}: "
            "the targets are found among many false positives"
        )
    else:
        return []
    rem = [
        Remedy("focal-loss", defaults("focal-loss"), "down-weights the easy background"),
        Remedy("ohem", {"ratio": 3.0}, "keeps the hardest negatives, the clutter that fires"),
        Remedy("soft-labels", {"kernel": 3, "sigma": 1.0, "trunc": 0.1}, "fewer near-miss peaks"),
        Remedy("spatial-attention", {}, "separates dim targets from clutter (seed)", False),
    ]
    return [
        Finding(
            "fp-flood",
            None,
            ev,
            f"False positives are not falling: {what}. The detector is unusable at its "
            "threshold until the negatives that fire are suppressed.",
            rem,
        )
    ]


def regression(m: MappedLog, ref: Reference, axis: str, th: Thresholds) -> list[Finding]:
    """regression-collapse (see the module docstring)."""
    s = m.series.get("reg_loss")
    i0, x, v = _at_constant(s, ref.reg_constant, th.reg_margin, th)
    if i0 is None:
        return []
    a, b = ends(v[i0:])
    change = abs(rel_drop(a, b) or 0.0)
    if change >= th.reg_flat_max:
        return []
    severity = "warning" if ref.offsets_needed is False else ""
    where = f"at {ref.level} " if ref.level else ""
    rem: list[Remedy] = []
    if ref.level and ref.level != "P2":
        rem.append(Remedy("fused-head", {}, "P4 finds, P2 places: coarse-to-fine (seed)"))
    if ref.finer_level:
        rem.append(
            Remedy(
                "level-change",
                {"level": ref.finer_level},
                f"{ref.finer_level} keeps the label quantisation under the match radius",
            )
        )
    rem += [
        Remedy("position-sensitive-offset", {}, "a head that sees where the target sits", False),
        Remedy("deformable-conv", {}, "samples the target's own pixels in a large cell", False),
        Remedy("coarse-to-fine", {}, "find on P4, refine on P2 in a local window (seed)", False),
    ]
    cost = (
        " At this level the cell centre is already within the match radius, so this costs little."
        if ref.offsets_needed is False
        else " The regression loss looks small while localisation is useless."
    )
    return [
        Finding(
            "regression-collapse",
            ref.level,
            evid(
                reg_loss_last=b,
                reg_loss_first=a,
                mean_predictor_loss=ref.reg_constant,
                ratio=b / ref.reg_constant,
                reg_margin=th.reg_margin,
                change=change,
                reg_flat_max=th.reg_flat_max,
                started_at=float(x[i0]),
                axis=axis,
            ),
            f"The offset loss {where}is flat at {b:.4g}, {b / ref.reg_constant:.2f}x the "
            f"{ref.reg_constant:.4g} of a head that predicts one constant offset "
            f"({ref.reg_constant_source}), from {at(axis, float(x[i0]))} (change "
            f"{change:.1%}): the offset head ignores where the target sits in its cell." + cost,
            rem,
            severity=severity,
        )
    ]


def find_symptoms(m: MappedLog, ref: Reference, th: Thresholds | None = None) -> list[Finding]:
    """Every symptom of a mapped log, sorted by severity, then rule order; with none at
    warning or above, one ``healthy`` finding."""
    from convdiag.diagnosis.rules import sort_findings

    t = th or Thresholds()
    axis = m.raw.x_name
    # what the run itself says first: validation off, a single-class cls loss
    val = validation_off(m, t)
    single = single_class(val.mapped)
    m = single.mapped
    found = val.findings + single.findings + non_finite(m, axis)
    flood = fp_flood(m, axis, t)
    # as in analyze: many false positives and no hit is a flood, not a quiet background
    found += flood or collapse(m, ref, axis, t)
    found += regression(m, ref, axis, t)
    found += plateaus(m, axis, t)
    short = too_short(m, t)
    if short is not None:
        found.append(short)  # never "healthy": too few points to judge
    elif not any(f.severity in ("warning", "error") for f in found):
        last = {k: float(finite(s)[1][-1]) for k, s in m.series.items() if len(finite(s)[1])}
        found.append(
            Finding(
                "healthy",
                ref.level,
                evid(**{k: last[k] for k in ("f1", "recall", "fp", "cls_loss") if k in last}),
                "No symptom in the log: no rule crossed its threshold over time. A log shows "
                "only what was logged; `convdiag analyze` measures the model itself.",
            )
        )
    # The same rules as analyze on what a log holds: say which evidence that was.
    available = ", ".join(sorted(m.series))
    for f in found:
        f.evidence["evidence_source"] = "training log"
        f.evidence["evidence_available"] = available
    return sort_findings(found)


__all__ = ["Reference", "ends", "find_symptoms", "finite", "signal_remedies"]
