"""Findings from measurements: rules, thresholds and the remedy catalogue.

Pure functions: ``diagnose(results, metrics, label_stats, recipe, thresholds)`` turns the
analyses of each level into ``Finding``s with their evidence (the numbers and the
thresholds they crossed), a two-sentence explanation and ranked remedies whose parameters
come from the data (soft-label sigma and kernel from the measured target size at the
level, pos_weight from the measured negatives per positive, the level to move to from the
label statistics). Verdicts come from measuring the model, never from its recipe alone.

Remedies are ranked by measured evidence: the F1 each reached on the dim synthetic P2 set
of DESIGN.md "Performance notes" (focal loss alone 0.63, soft labels and the dynamic
schedule matched it, pos_weight 100 0.45, OHEM 3:1 with hard labels 0.01), plus half the
gain in target-area gradient share that the counterfactual gradient of the same logits
under the remedy shows (``analyses.gradients``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from convdiag.diagnosis.findings import Finding, Remedy, severity_rank
from convdiag.errors import InputError
from convdiag.load.recipe import REMEDY_DEFAULTS, Recipe
from convdiag.targets.geometry import stride_of


@dataclass
class Thresholds:
    """Diagnosis thresholds; every field can be set in ``[tool.convdiag.thresholds]``.

    - f1_min: F1 at the threshold below this = detection failed.
    - auc_min: target-vs-background AUC at or above this (and some threshold reaching
      F1 >= f1_min) = ranking present.
    - calibration_f1_share, calibration_peak_share: with ranking present, F1 at the threshold
      below this share of the best F1 at any threshold while fewer than this share of the
      targets' peaks reach the threshold = calibration-collapse (also when not failed); the
      peak share also gates gradient-starvation (only targets not learned yet starve).
    - fp_per_image_max, precision_max_flood: more FP per image (and, unless detection
      failed, precision below this) = fp-flood.
    - grad_share_min, grad_cells_90_max: target-area share of the cls gradient mass below
      the first, or share of cells carrying 90% of it above the second = gradient-starvation.
    - offset_std_ratio_min, offset_r2_min: both below = regression-collapse, when offsets
      matter (cell-centre RMS error above offset_needed_radius_share x radius).
    - quantization_radius_share: label quantisation p95 above this x radius, with the
      model's p90 offset error above the radius = label-quantization.
    - collision_share_max: label-collision. head_ratio_max: |grad cls| / |grad reg| outside
      [1/x, x] = head-imbalance. nonfinite_max: share of non-finite outputs tolerated.
    - min_targets: fewer target cells than this = offset statistics not judged.
    """

    f1_min: float = 0.1
    auc_min: float = 0.9
    calibration_f1_share: float = 0.5
    calibration_peak_share: float = 0.5
    fp_per_image_max: float = 5.0
    precision_max_flood: float = 0.3
    grad_share_min: float = 0.2
    grad_cells_90_max: float = 0.5
    offset_std_ratio_min: float = 0.5
    offset_r2_min: float = 0.25
    offset_needed_radius_share: float = 0.6
    quantization_radius_share: float = 1.0
    collision_share_max: float = 0.01
    head_ratio_max: float = 100.0
    nonfinite_max: float = 0.0
    min_targets: float = 10.0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names (the keys a config file may set)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_config(cls, overrides: dict[str, float] | None) -> Thresholds:
        """Defaults updated by ``overrides`` (unknown names: InputError)."""
        t = cls()
        for k, v in (overrides or {}).items():
            if k not in cls.names():
                raise InputError(f"unknown threshold {k!r} (known: {', '.join(cls.names())})")
            setattr(t, k, float(v))
        return t

    def to_dict(self) -> dict[str, float]:
        """Plain data."""
        return dataclasses.asdict(self)


# Measured F1 of each remedy on the dim synthetic P2 set (DESIGN.md "Performance notes").
MEASURED_F1 = {
    "focal-loss": 0.63,
    "soft-labels": 0.63,
    "sigma-schedule": 0.63,
    "pos-weight": 0.45,
    "ohem": 0.01,
}
UNMEASURED_PRIOR = 0.3
MEASURED_WHY = {
    "focal-loss": "focal loss alone fixed P2 on the dim synthetic set (F1 0.63)",
    "soft-labels": "soft labels matched focal loss on the dim synthetic set (F1 ~0.63)",
    "sigma-schedule": "the dynamic schedule matched focal loss on the dim synthetic set",
    "pos-weight": "pos_weight 100 helped partly on the dim synthetic set (F1 0.45)",
    "ohem": "OHEM 3:1 with hard labels failed on the dim synthetic set (F1 0.01)",
}

TITLES = {
    "non-finite-outputs": "non-finite outputs",
    "background-collapse": "background collapse",
    "calibration-collapse": "calibration collapse",
    "fp-flood": "false-positive flood",
    "regression-collapse": "regression collapse",
    "gradient-starvation": "gradient starvation",
    "head-imbalance": "head imbalance",
    "label-quantization": "label quantization",
    "label-collision": "label collision",
    "healthy": "healthy",
}
ID_ORDER = tuple(TITLES)


# --------------------------------------------------------------------------- helpers


def _r(v: Any, digits: int = 4) -> Any:
    """Round floats to ``digits`` significant digits for evidence (None stays None)."""
    if isinstance(v, float) and math.isfinite(v) and v != 0:
        return float(f"{v:.{digits}g}")
    return v


def _ev(**kw: Any) -> dict[str, Any]:
    return {k: _r(v) for k, v in kw.items()}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def soft_params(stride: int, targets: dict[str, Any] | None, trunc: float) -> dict[str, Any]:
    """Soft-label parameters at a stride from the measured target radius (label_stats rules:
    sigma = radius / stride clamped to 0.8-1.2, kernel = smallest odd window >= trunc)."""
    from convdiag.analyses.run import soft_params_for

    return soft_params_for(stride, (targets or {}).get("radius_px"), trunc)


def _coarser_level(level: str, stats: dict[str, Any], th: Thresholds) -> str | None:
    """The finest level coarser than ``level`` with <= 1,000 negatives per positive and few
    collisions, from the label statistics (None if none)."""
    s = stride_of(level)
    for name, v in sorted(stats["levels"].items(), key=lambda kv: kv[1]["stride"]):
        npp = v.get("neg_per_pos")
        few = v["collision_share"] <= th.collision_share_max
        if v["stride"] > s and npp is not None and npp <= 1000 and few:
            return str(name)
    return None


def _finer_level(level: str, stats: dict[str, Any], radius: float, th: Thresholds) -> str | None:
    """The coarsest level finer than ``level`` whose quantisation p95 is under the radius
    and whose collisions stay under the maximum (None if none)."""
    s = stride_of(level)
    best = None
    for name, v in sorted(stats["levels"].items(), key=lambda kv: kv[1]["stride"]):
        q = v["quantization_px"]["p95"]
        few = v["collision_share"] <= th.collision_share_max
        if v["stride"] < s and q is not None and q < radius and few:
            best = str(name)
    return best


@dataclass
class _Ctx:
    level: str
    res: dict[str, Any]
    m: dict[str, Any]
    stats: dict[str, Any]
    lstats: dict[str, Any]
    recipe: Recipe
    th: Thresholds
    targets: dict[str, Any] | None
    reference: bool
    radius: float

    @property
    def cf(self) -> dict[str, Any]:
        out: dict[str, Any] = self.res["gradients"]["candidates"]
        return out


def _signal_remedies(c: _Ctx, include: Iterable[str]) -> list[Remedy]:
    """Remedies that move the learning signal toward the targets, ranked by measured F1 plus
    half the counterfactual gain in target-area gradient share."""
    r = c.recipe
    stride = stride_of(c.level)
    cur = c.cf.get("current", {}).get("target_area_grad_share")
    out: list[tuple[float, Remedy]] = []
    for rid in include:
        params: dict[str, Any]
        if rid == "focal-loss":
            if r.loss == "focal":
                continue
            params = {"alpha": 2.0, "beta": 4.0}
        elif rid == "soft-labels":
            if r.soft:
                continue
            params = soft_params(stride, c.targets, r.trunc)
        elif rid == "sigma-schedule":
            if r.schedule:
                continue
            params = {"schedule": "dynamic"}
        elif rid == "pos-weight":
            if r.pos_weight or r.loss != "bce":
                continue
            from convdiag.analyses.run import pos_weight_for

            params = {"w": pos_weight_for(c.lstats.get("neg_per_pos"))}
        elif rid == "ohem":
            if r.ohem is not None or r.loss != "bce":
                continue
            params = {"ratio": 3.0}
        elif rid == "loss-ramp":
            if r.loss_ramp:
                continue
            params = dict(REMEDY_DEFAULTS["loss-ramp"])
        elif rid == "oversample":
            if r.oversample > 0:
                continue
            params = {"p": 0.5}
        else:
            continue
        cf_name = "soft-labels" if rid == "sigma-schedule" else rid
        new = c.cf.get(cf_name, {}).get("target_area_grad_share")
        gain = (new - cur) if new is not None and cur is not None else 0.0
        score = MEASURED_F1.get(rid, UNMEASURED_PRIOR) + 0.5 * gain
        parts = [MEASURED_WHY.get(rid, "not measured here; ranked below the measured remedies")]
        if new is not None and cur is not None:
            parts.append(
                f"on these logits it moves the target-area gradient share {_pct(cur)} -> "
                f"{_pct(new)}"
            )
        if rid == "soft-labels":
            parts.append(_soft_why(c, params))
        if rid == "pos-weight":
            parts.append(f"w = sqrt({_num(c.lstats.get('neg_per_pos'))} negatives per positive)")
        out.append((score, Remedy(rid, params, "; ".join(parts))))
    out.sort(key=lambda sr: -sr[0])
    return [rem for _, rem in out]


def _soft_why(c: _Ctx, params: dict[str, Any]) -> str:
    rad = (c.targets or {}).get("radius_px")
    src = f"measured target radius {rad:.2f} px" if rad else "the seed's 2.5 px target radius"
    return (
        f"{params['kernel']}x{params['kernel']}, sigma {params['sigma']:g} cells from the {src} "
        f"/ stride {stride_of(c.level)}, clamped to 0.8-1.2"
    )


def _level_change(c: _Ctx, level: str | None, why: str) -> list[Remedy]:
    """A level-change remedy, with the imbalance it brings when the new level is finer."""
    if level is None:
        return []
    note = "" if c.reference else " (architecture change: reference detector only)"
    npp = c.stats["levels"].get(level, {}).get("neg_per_pos")
    if stride_of(level) < stride_of(c.level) and npp is not None and npp > 1000:
        note += (f"; {level} has {npp:,.0f} negatives per positive: train it with focal "
                 "loss or soft labels")  # fmt: skip
    return [Remedy("level-change", {"level": level}, why + note)]


def _advice(rid: str, why: str) -> Remedy:
    return Remedy(rid, {}, why, applied=False)


# --------------------------------------------------------------------------- rules


def _nonfinite(c: _Ctx) -> Finding | None:
    o = c.res["outputs"]
    fc, fr = o["cls_nonfinite_fraction"] or 0.0, o["reg_nonfinite_fraction"] or 0.0
    if fc <= c.th.nonfinite_max and fr <= c.th.nonfinite_max:
        return None
    return Finding(
        "non-finite-outputs",
        c.level,
        _ev(
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
        [
            Remedy(
                "loss-ramp",
                dict(REMEDY_DEFAULTS["loss-ramp"]),
                "a capped cls-loss weight ramp avoids the early blow-up of large weights",
            )
        ],
    )


def _collapse(c: _Ctx) -> list[Finding]:
    m, th = c.m, c.th
    f1 = m["f1_at_threshold"]
    fp = m["fp_per_image_at_threshold"]
    auc, low = m["auc"], m["best_f1_low"]
    thr = c.res["detections"]["threshold"]
    prec = c.res["detections"]["precision_at_threshold"]
    failed = f1 is not None and f1 < th.f1_min
    out: list[Finding] = []
    base = _ev(
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
        out.append(_fp_flood(c, base, fp, prec))
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
    rems_all = (
        "focal-loss",
        "soft-labels",
        "sigma-schedule",
        "pos-weight",
        "loss-ramp",
        "oversample",
        "ohem",
    )
    if ranking:
        rem = _signal_remedies(c, ("pos-weight", "focal-loss", "soft-labels", "loss-ramp"))
        out.append(
            Finding(
                "calibration-collapse",
                c.level,
                base,
                f"At {c.level} the model ranks targets above background (AUC {auc:.3f}, "
                f"F1 {low:.2f} at threshold {m['best_threshold_low']:g}) but its target peaks "
                f"(median {_num(m['peak_score_p50'])}; {_pct(peaks)} reach {thr:g}) stay below "
                f"the threshold, so F1 at {thr:g} "
                f"is {f1:.2f}. The signal is there and the scores are pinned low by the "
                "imbalanced loss; lift them (or lower the threshold) rather than relearn.",
                rem,
            )
        )
        return out
    coarse = _coarser_level(c.level, c.stats, th)
    rem = _signal_remedies(c, rems_all)
    rem += _level_change(
        c,
        coarse,
        f"{coarse} has <= 1,000 negatives per positive "
        "(classification works there; offsets must then localise)",
    )
    rem.append(
        _advice(
            "spatial-attention",
            f"spatial attention before {c.level} helps a "
            "dim target stand out from clutter (seed); AUC " + _num(auc),
        )
    )
    out.append(
        Finding(
            "background-collapse",
            c.level,
            base,
            f"At {c.level} the model predicts background everywhere: F1 {f1:.2f} at {thr:g}, "
            f"target peaks median {_num(m['peak_score_p50'])} against a label prior of "
            f"{_num(m['label_prior'])}, cls loss {_num(m['loss_ratio'])}x the constant "
            f"predictor's, ranking AUC {_num(auc)}. With "
            f"{_num(c.lstats.get('neg_per_pos'))} negatives per positive the loss is "
            "minimised by the all-background answer, so the few target cells never win.",
            rem,
        )
    )
    return out


def _fp_flood(c: _Ctx, base: dict[str, Any], fp: float, prec: float | None) -> Finding:
    h = c.res["detections"]["histograms"]
    near = h["fp_near_miss"] + h["fp_duplicate"]
    bg = h["fp_background"]
    ev = dict(base)
    ev.update(
        _ev(
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
        rem += _signal_remedies(c, ("soft-labels", "focal-loss"))
        cause = (
            f"{near} of them lie within 2r of a target (duplicates and near misses): "
            "the peaks are spread or misplaced around the targets"
        )
    else:
        rem += _signal_remedies(c, ("focal-loss", "ohem", "soft-labels"))
        for r in rem:
            if r.id == "ohem":
                r.why = "keeps the hardest negatives, the clutter that fires; " + r.why
        cause = (
            f"{bg} of them lie farther than 2r from any target: background clutter "
            "scores like a target"
        )
    rem.append(
        _advice(
            "spatial-attention", "spatial attention helps separate dim targets from clutter (seed)"
        )
    )
    return Finding(
        "fp-flood",
        c.level,
        ev,
        f"At {c.level} the model fires {fp:.1f} false positives per image at threshold "
        f"{base['threshold']:g} (precision {_num(prec)}); {cause}. The detector is "
        "unusable at this threshold until the negatives that fire are suppressed.",
        rem,
    )


def _regression(c: _Ctx) -> list[Finding]:
    off = c.res["offsets"]
    th = c.th
    if not off.get("available") or off.get("target_cells", 0) < th.min_targets:
        return []
    sr, r2 = off.get("offset_std_ratio"), off.get("offset_r2")
    rm = off["rmse_cells"]["centre_predictor"]
    stride = stride_of(c.level)
    centre_rms_px = stride * math.sqrt(sum((rm[a] or 0.0) ** 2 for a in "xy"))
    needed = centre_rms_px > th.offset_needed_radius_share * c.radius
    if sr is None or r2 is None or not needed:
        return []
    if not (sr < th.offset_std_ratio_min and r2 < th.offset_r2_min):
        return []
    loc = off["loc_error_px"]
    finer = _finer_level(c.level, c.stats, c.radius, th)
    rem: list[Remedy] = []
    if stride_of(c.level) > 4:
        note = "" if c.reference else " (reference detector only)"
        rem.append(
            Remedy(
                "fused-head",
                {},
                "P4 finds, P2 places: coarse-to-fine with a fine offset (seed)" + note,
            )
        )
    rem += _level_change(
        c, finer, f"{finer} keeps the label quantisation under the {c.radius:g} px radius"
    )
    rem += [
        _advice(
            "position-sensitive-offset",
            f"offset std ratio {sr:.2f}: a head that sees where in the cell the target sits (seed)",
        ),
        _advice(
            "deformable-conv",
            "deformable convolution samples the target's own pixels inside a large cell (seed)",
        ),
        _advice(
            "spatial-attention",
            f"spatial attention on {c.level} narrows the large "
            "receptive field to the target (seed)",
        ),
        _advice("coarse-to-fine", "find on P4, refine on P2 in a local window (seed)"),
    ]
    return [
        Finding(
            "regression-collapse",
            c.level,
            _ev(
                offset_std_ratio=sr,
                offset_std_ratio_min=th.offset_std_ratio_min,
                offset_r2=r2,
                offset_r2_min=th.offset_r2_min,
                loc_error_px=loc["model_mean"],
                centre_loc_error_px=loc["centre_mean"],
                centre_rms_px=centre_rms_px,
                offset_needed_px=th.offset_needed_radius_share * c.radius,
                reg_loss=c.m["reg_loss"],
                target_cells=off["target_cells"],
            ),
            f"At {c.level} the offset head barely varies with the target (std ratio {sr:.2f}, "
            f"R^2 {r2:.2f}): it predicts about the mean, {_num(loc['model_mean'])} px from "
            f"the targets against {_num(loc['centre_mean'])} px for the bare cell centre. "
            f"A {stride}-px cell is too coarse for the head to place a point inside it, so "
            "the regression loss looks small while localisation is useless.",
            rem,
        )
    ]


def _labels(c: _Ctx) -> list[Finding]:
    out: list[Finding] = []
    v, th = c.lstats, c.th
    q = v["quantization_px"]
    off = c.res["offsets"]
    p95 = q.get("p95")
    model_p90 = (off.get("loc_error_px") or {}).get("model_p90") if off.get("available") else None
    bar = th.quantization_radius_share * c.radius
    if p95 is not None and p95 > bar and (model_p90 is None or model_p90 > c.radius):
        finer = _finer_level(c.level, c.stats, c.radius, th)
        rem = []
        if stride_of(c.level) > 4:
            note = "" if c.reference else " (reference detector only)"
            rem.append(Remedy("fused-head", {}, "P4 finds, P2 places: the cell no longer "
                              "limits localisation (seed)" + note))  # fmt: skip
        rem += _level_change(c, finer, f"{finer} keeps the quantisation p95 under "
                             f"{c.radius:g} px")  # fmt: skip
        rem.append(_advice("position-sensitive-offset", "an offset head that sees position"))
        how = (
            "there is no offset head"
            if model_p90 is None
            else f"the offset head does not recover it (p90 error {model_p90:.2f} px)"
        )
        out.append(
            Finding(
                "label-quantization",
                c.level,
                _ev(
                    quantization_p95_px=p95,
                    quantization_mean_px=q.get("mean"),
                    radius_px=c.radius,
                    quantization_p95_max_px=bar,
                    model_loc_p90_px=model_p90,
                    share_over_radius=q.get("share_over_radius"),
                    stride=v["stride"],
                ),
                f"At {c.level} a target is up to {p95:.2f} px (p95) from its cell centre, "
                f"beyond the {c.radius:g} px match radius, and {how}. Targets decoded at the "
                "cell centre miss the match even when the right cell fires.",
                rem,
            )
        )
    share = v.get("collision_share") or 0.0
    if share > th.collision_share_max:
        finer = _finer_level(c.level, c.stats, c.radius, th)
        out.append(
            Finding(
                "label-collision",
                c.level,
                _ev(
                    collisions=v["collisions"],
                    targets=v["targets"],
                    collision_share=share,
                    collision_share_max=th.collision_share_max,
                    recall_at_threshold=c.res["detections"]["recall_at_threshold"],
                ),
                f"{v['collisions']} of {v['targets']} targets ({share:.1%}) share their "
                f"{c.level} cell with another target. One cell holds one label and one "
                "offset, so at most one of them can be detected.",
                _level_change(c, finer, f"{finer} separates the targets"),
            )
        )
    return out


def _starvation(c: _Ctx) -> Finding | None:
    cur = c.cf.get("current", {})
    share, cells90 = cur.get("target_area_grad_share"), cur.get("cells_for_90pct")
    th = c.th
    low = share is not None and share < th.grad_share_min
    diffuse = cells90 is not None and cells90 > th.grad_cells_90_max
    peaks = c.m["peaks_above_threshold"]
    # A converged model has tiny, evenly spread gradients: only unlearned targets starve.
    unlearned = peaks is None or peaks < th.calibration_peak_share
    if not (low or diffuse) or not unlearned:
        return None
    sh = cur.get("shares", {})
    rem = _signal_remedies(
        c, ("focal-loss", "soft-labels", "loss-ramp", "pos-weight", "oversample")
    )
    return Finding(
        "gradient-starvation",
        c.level,
        _ev(
            target_area_grad_share=share,
            grad_share_min=th.grad_share_min,
            grad_cells_90=cells90,
            grad_cells_90_max=th.grad_cells_90_max,
            target_share=sh.get("target"),
            neighbourhood_share=sh.get("neighbourhood"),
            background_share=sh.get("background"),
            hotspot_share=sh.get("hotspot"),
        ),
        f"At {c.level} targets and their neighbourhood get {_pct(share)} of the "
        f"classification gradient and {_pct(cells90)} of the cells are needed to hold 90% of "
        "it. The learning signal is spread over the background, so each step mostly "
        "re-teaches 'background' instead of the targets.",
        rem,
    )


def _heads(c: _Ctx) -> Finding | None:
    hd = c.res["heads"]
    ratio = hd.get("cls_reg_ratio")
    if ratio is None or ratio <= 0:
        return None
    mx = c.th.head_ratio_max
    if 1.0 / mx <= ratio <= mx:
        return None
    weak = "classification" if ratio < 1 else "offset"
    # An imbalance only matters while the weaker task still fails (an L1 gradient never
    # vanishes, so a converged classifier always looks weak next to it).
    f1, r2 = c.m["f1_at_threshold"], c.m["offset_r2"]
    if weak == "classification" and f1 is not None and f1 >= c.th.calibration_f1_share:
        return None
    if weak == "offset" and (r2 is None or r2 >= c.th.offset_r2_min):
        return None
    rem = []
    if weak == "classification" and not c.recipe.loss_ramp:
        rem.append(
            Remedy(
                "loss-ramp",
                dict(REMEDY_DEFAULTS["loss-ramp"]),
                f"raises the cls-loss weight gradually (cap 10) against a "
                f"{1 / ratio:.0f}x weaker classification gradient",
            )
        )
    return Finding(
        "head-imbalance",
        c.level,
        _ev(
            cls_grad_norm=hd["cls_grad_norm"],
            reg_grad_norm=hd["reg_grad_norm"],
            cls_reg_ratio=ratio,
            head_ratio_max=mx,
        ),
        f"At {c.level} the {weak} head's parameter gradient is "
        f"{max(ratio, 1 / ratio):.0f}x smaller than the other head's. The shared features "
        f"are shaped almost only by the other task, so the {weak} branch learns slowly.",
        rem,
    )


def _healthy(level: str, m: dict[str, Any]) -> Finding:
    return Finding(
        "healthy",
        level,
        _ev(
            best_f1=m["best_f1"],
            f1_at_threshold=m["f1_at_threshold"],
            auc=m["auc"],
            fp_per_image=m["fp_per_image_at_threshold"],
            loss_ratio=m["loss_ratio"],
            offset_r2=m["offset_r2"],
            pos_grad_share=m["pos_grad_share"],
        ),
        f"At {level} the model detects targets (F1 {m['f1_at_threshold']:.2f}, best "
        f"{m['best_f1']:.2f}) with ranking AUC {_num(m['auc'])} and "
        f"{_num(m['fp_per_image_at_threshold'])} false positives per image. No rule crossed "
        "its threshold.",
    )


# --------------------------------------------------------------------------- entry points


def diagnose(
    results: dict[str, dict[str, Any]],
    metrics: dict[str, dict[str, Any]],
    label_stats: dict[str, Any],
    recipe: Recipe,
    thresholds: Thresholds | None = None,
    targets: dict[str, Any] | None = None,
    reference: bool = True,
    radius: float | None = None,
) -> list[Finding]:
    """Findings of every level, sorted: severity (error first), then ID_ORDER, then level.

    results: {level: {analysis: compute()}}; metrics: {level: level_metrics}; label_stats:
    ``label_statistics`` output covering the analysed levels (and coarser/finer ones for
    level changes); targets: ``measure_targets`` output; reference: whether the model is
    the reference detector (level-change and fused-head apply to it only). A level with no
    target cell is judged on its false positives only. With no warning or error anywhere,
    one ``healthy`` finding per level.
    """
    th = thresholds or Thresholds()
    rad = float(
        radius if radius is not None else label_stats.get("settings", {}).get("radius", 3.0)
    )
    found: list[Finding] = []
    for level, res in results.items():
        c = _Ctx(
            level,
            res,
            metrics[level],
            label_stats,
            label_stats["levels"][level],
            recipe,
            th,
            targets,
            reference,
            rad,
        )
        nf = _nonfinite(c)
        if nf is not None:
            found.append(nf)
        if not res["scores"]["target_cells"]:
            # Nothing to detect: only the false positives can be judged.
            found += [f for f in _collapse(c) if f.id == "fp-flood"]
            continue
        found += _collapse(c)
        found += _regression(c)
        found += _labels(c)
        for f in (_starvation(c), _heads(c)):
            if f is not None:
                found.append(f)
    if not any(severity_rank(f.severity) >= 1 for f in found):
        found += [_healthy(level, metrics[level]) for level in results]
    return sort_findings(found)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Severity (error first), then the order of ID_ORDER, then the level's stride."""

    def key(f: Finding) -> tuple[int, int, int]:
        order = ID_ORDER.index(f.id) if f.id in ID_ORDER else len(ID_ORDER)
        lv = stride_of(f.level) if f.level else 0
        return (-severity_rank(f.severity), order, lv)

    return sorted(findings, key=key)


def verdict(findings: list[Finding] | list[dict[str, Any]]) -> str:
    """One line: the top finding's title and level, and how many more there are."""
    fs = [f if isinstance(f, Finding) else Finding.from_dict(f) for f in findings]
    if not fs:
        return "no findings"
    top = fs[0]
    title = TITLES.get(top.id, top.id)
    where = f" at {top.level}" if top.level else ""
    if top.id == "healthy":
        return f"healthy{where}: no rule crossed its threshold"
    more = len([f for f in fs[1:] if f.id != "healthy"])
    tail = f" (+{more} more finding{'s' if more != 1 else ''})" if more else ""
    return f"{top.severity}: {title}{where}{tail}"
