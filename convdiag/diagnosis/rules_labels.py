"""The labels surface's rules: risks read from label statistics before any training.

``labels`` speaks of risk, ``analyze`` of what happened: the same ids (label-quantization,
label-collision) with the thresholds of the one ``Thresholds`` (``label_quantization_share``
of the radius, ``collision_share_max``, ``neg_per_pos_max``).
"""

from __future__ import annotations

from typing import Any

from convdiag.analyses.label_stats import _target_radius, kernel_for, sigma_for
from convdiag.diagnosis.findings import Finding, Remedy
from convdiag.diagnosis.remedy_catalogue import FOCAL_ALPHA, FOCAL_BETA
from convdiag.diagnosis.rules_shift import agreement_shift
from convdiag.diagnosis.thresholds import Thresholds


def label_findings(stats: dict[str, Any], th: Thresholds | None = None) -> list[Finding]:
    """The risks ``labels`` reports from the label statistics alone (no model): label
    quantisation, collisions and extreme imbalance, and a label shift between two
    annotations of the same targets (``stats["label_agreement"]``), by the shared
    ``Thresholds``."""
    th = th or Thresholds()
    radius = float(stats["settings"]["radius"])
    agreed = agreement_shift(stats.get("label_agreement") or {}, th, radius)
    trunc = float(stats["settings"]["trunc"])
    radius_px, _ = _target_radius(stats["settings"])
    levels = sorted(stats["levels"].items(), key=lambda kv: kv[1]["stride"])
    out: list[Finding] = [agreed] if agreed is not None else []
    for name, v in levels:
        q = v["quantization_px"]
        finer = [
            k
            for k, w in levels
            if w["stride"] < v["stride"] and (w["quantization_px"]["p95"] or 0) < radius
        ]
        if q["p95"] is not None and q["p95"] > th.label_quantization_share * radius:
            over = q["p95"] > radius
            rem = []
            if finer:
                why_f = f"{finer[-1]} keeps p95 under {radius:g} px"
                rem.append(Remedy("level-change", {"level": finer[-1]}, why_f))
            rem.append(Remedy("fused-head", {}, "P4 finds, P2 refines (coarse-to-fine)"))
            rem.append(
                Remedy("position-sensitive-offset", {}, "offset head that sees position", False)
            )
            share = (
                f" > the {radius:g} px match radius"
                if over
                else f", {q['p95'] / radius:.0%} of the {radius:g} px match radius"
            )
            out.append(
                Finding(
                    "label-quantization",
                    name,
                    {
                        "p95_px": q["p95"],
                        "mean_px": q["mean"],
                        "max_px": q["max"],
                        "radius_px": radius,
                        "threshold_px": th.label_quantization_share * radius,
                        "share_over_radius": q["share_over_radius"],
                        "stride": v["stride"],
                    },
                    f"At {name} (stride {v['stride']}) the cell centre is {q['mean']:.2f} px "
                    f"from its target on average, p95 {q['p95']:.2f} px"
                    + share
                    + f" ({q['share_over_radius']:.0%} of targets beyond it): localisation rests"
                    " on the offset head, which tends to collapse toward the cell centre.",
                    rem,
                    severity="warning",
                )
            )
        if v["collision_share"] > th.collision_share_max:
            finer_c = [
                k
                for k, w in levels
                if w["stride"] < v["stride"] and w["collision_share"] <= th.collision_share_max
            ]
            out.append(
                Finding(
                    "label-collision",
                    name,
                    {
                        "collisions": v["collisions"],
                        "targets": v["targets"],
                        "collision_share": v["collision_share"],
                        "threshold": th.collision_share_max,
                    },
                    f"{v['collisions']} of {v['targets']} targets ({v['collision_share']:.1%}) "
                    f"share their {name} cell with another: one label and one offset per cell, "
                    "so those targets cannot all be detected.",
                    [Remedy("level-change", {"level": finer_c[-1]}, "fewer shared cells")]
                    if finer_c
                    else [],
                    severity="warning",
                )
            )
        npp = v["neg_per_pos"]
        if npp is not None and npp > th.neg_per_pos_max:
            sigma = sigma_for(int(v["stride"]), radius_px)
            kernel = kernel_for(sigma, trunc)
            cl = v["constant_loss"]
            out.append(
                Finding(
                    "extreme-imbalance",
                    name,
                    {
                        "neg_per_pos": npp,
                        "pos_fraction": v["pos_fraction"],
                        "threshold": th.neg_per_pos_max,
                        "constant_loss_bce": cl["bce"],
                        "constant_loss_focal": cl["focal"],
                        "initial_pos_grad_share_zero_bias": v["initial_pos_grad_share_zero_bias"],
                    },
                    f"{npp:,.0f} negatives per positive at {name}: predicting background "
                    f"everywhere already scores BCE {cl['bce']:.4g}, and at a zero-initialised "
                    f"bias positives carry {v['initial_pos_grad_share_zero_bias']:.2%} of the "
                    "gradient; hard one-cell labels invite the all-background solution.",
                    [
                        Remedy(
                            "focal-loss",
                            {"alpha": FOCAL_ALPHA, "beta": FOCAL_BETA},
                            "down-weights the easy background",
                        ),
                        Remedy(
                            "soft-labels",
                            {"kernel": kernel, "sigma": sigma, "trunc": trunc},
                            "more labelled cells per target",
                        ),
                        Remedy(
                            "sigma-schedule",
                            {"schedule": "dynamic"},
                            "wide labels first, narrow at the end",
                        ),
                        Remedy("oversample", {"p": 0.5}, "more crops that hold a target"),
                    ],
                    severity="warning",
                )
            )
    return out
