"""The Monitor's rules: which symptoms a sample shows and the finding each one gives.

The same ``Thresholds`` as every surface; a Monitor sample has no detections and no
counterfactual gradients, so background-collapse is judged on the target peaks and the cls
loss against the constant predictor's (the evidence says so), and remedies are ordered by
the catalogue's prior alone (labelled as such).
"""

from __future__ import annotations

import math
from typing import Any

from convdiag.diagnosis.findings import Finding, Remedy
from convdiag.diagnosis.remedy_catalogue import defaults
from convdiag.diagnosis.thresholds import Thresholds


def sample_symptoms(st: dict[str, Any], th: Thresholds, radius: float) -> dict[str, bool]:
    """Which symptoms one Monitor sample shows, by the thresholds every surface shares:
    targets unlearned (fewer than ``calibration_peak_share`` of the peaks reach the
    threshold) with the cls loss within ``loss_margin`` of the constant predictor's =
    background-collapse; and the analyze rules for starvation, regression and heads."""
    peaks = st["peaks_above_threshold"]
    unlearned = peaks is not None and peaks < th.calibration_peak_share
    ratio = st["loss_ratio"]
    at_const = ratio is not None and abs(ratio - 1.0) <= th.loss_margin
    share = st["pos_grad_share"]
    sr, r2 = st["offset_std_ratio"], st["offset_r2"]
    centre = st["centre_rms_px"]
    needed = centre is not None and centre > th.offset_needed_radius_share * radius
    reg_collapsed = (
        st["offset_targets"] >= th.min_targets
        and sr is not None
        and r2 is not None
        and sr < th.offset_std_ratio_min
        and r2 < th.offset_r2_min
    )
    hr = st["cls_reg_ratio"]
    imbalance = False
    if hr is not None and hr > 0 and not 1 / th.head_ratio_max <= hr <= th.head_ratio_max:
        imbalance = unlearned if hr < 1 else (r2 is None or r2 < th.offset_r2_min)
    return {
        "non-finite-outputs": bool(st["nonfinite"]),
        "background-collapse": unlearned and at_const,
        "gradient-starvation": unlearned and share is not None and share < th.grad_share_min,
        "regression-collapse": needed and reg_collapsed,
        "head-imbalance": imbalance,
    }


def sample_finding(mon: Any, sid: str, st: dict[str, Any], start: int, n: int) -> Finding:
    """The finding of symptom ``sid`` seen by Monitor ``mon`` at ``n`` samples since step
    ``start``: its evidence, text and remedies (the catalogue's, ranked as in logs)."""
    from convdiag.diagnosis.remedy_catalogue import soft_params_for
    from convdiag.watch.symptoms import Reference, signal_remedies

    prior = st["prior"]
    base = {"started_at": start, "samples": n, "step": st["step"]}
    ref = Reference(level=mon.level, loss=mon.loss, prior=prior)
    ref.neg_per_pos = (1 - prior) / prior if 0 < prior < 1 else None
    ref.soft = soft_params_for(mon.stride, None, mon.trunc)
    lv = mon.level
    if sid == "non-finite-outputs":
        ev = _pick(st, "nonfinite_cls", "nonfinite_reg", "loss", "cls_grad_norm",
                   "reg_grad_norm")  # fmt: skip
        text = (
            f"NaN or infinite outputs, loss or gradients at step {st['step']}: training "
            "diverged. Lower the learning rate, cap the loss weight, check input scaling."
        )
        rem = [Remedy("loss-ramp", defaults("loss-ramp"),
                      "a capped weight ramp avoids the early blow-up")]  # fmt: skip
    elif sid in ("background-collapse", "gradient-starvation"):
        ev = _pick(st, "peak_score_p50", "peaks_above_threshold", "loss_ratio", "cls_loss",
                   "constant_loss", "mean_score", "prior", "pos_grad_share")  # fmt: skip
        if sid == "background-collapse":
            text = (
                f"At {lv} the model predicts background: target peaks median "
                f"{_f(st['peak_score_p50'])} ({_f(st['peaks_above_threshold'])} reach "
                f"{mon.threshold:g}), cls loss {_f(st['loss_ratio'])}x the constant "
                f"predictor's, mean score {_f(st['mean_score'])} against a prior of "
                f"{_f(prior)}, for {n} checks since step {start}."
            )
        else:
            text = (
                f"At {lv} targets carry {_f(st['pos_grad_share'])} of the cls gradient "
                f"(< {mon.th.grad_share_min:g}) while their peaks stay low, for {n} checks "
                f"since step {start}: each step mostly re-teaches the background."
            )
        rem = signal_remedies(ref)
    elif sid == "regression-collapse":
        ev = _pick(st, "offset_std_ratio", "offset_r2", "offset_targets", "centre_rms_px")
        text = (
            f"At {lv} the offset head barely follows the targets (std ratio "
            f"{_f(st['offset_std_ratio'])}, R^2 {_f(st['offset_r2'])}) for {n} checks "
            f"since step {start}, where the cell centre is {_f(st['centre_rms_px'])} px "
            "(RMS) from the targets."
        )
        rem = []
        if lv != "P2":
            rem.append(Remedy("fused-head", {}, "P4 finds, P2 places (seed)"))
        rem.append(Remedy("position-sensitive-offset", {}, "a head that sees position", False))
    else:
        ratio = st["cls_reg_ratio"]
        weak = "classification" if ratio < 1 else "offset"
        ev = _pick(st, "cls_grad_norm", "reg_grad_norm", "cls_reg_ratio")
        ev["head_ratio_max"] = mon.th.head_ratio_max
        text = (
            f"At {lv} the {weak} head's gradient is {max(ratio, 1 / ratio):.0f}x smaller than "
            f"the other's for {n} checks since step {start}, while that task still fails."
        )
        rem = []
        if weak == "classification":
            rem.append(Remedy("loss-ramp", defaults("loss-ramp"),
                              "raises the cls-loss weight gradually, capped"))  # fmt: skip
    evidence = {**base, **{k: _round(v) for k, v in ev.items()}}
    # A Monitor sample has no detections and no counterfactual gradients: say what it had.
    evidence["evidence_source"] = "Monitor sample (one training batch)"
    evidence["evidence_available"] = ", ".join(sorted(k for k, v in st.items() if v is not None))
    return Finding(sid, lv, evidence, text, rem)


def _pick(st: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: st[k] for k in keys}


def _round(v: Any) -> Any:
    if isinstance(v, float) and math.isfinite(v) and v != 0:
        return float(f"{v:.4g}")
    return v


def fmt_value(v: Any) -> str:
    """A number as shown in a warning (3 significant digits; None as -)."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


_f = fmt_value
