"""label-shift: the peaks sit at a consistent displacement from the labels.

Reads ``analyses.displacement`` (the vector from each target to its nearest peak within a
few cells). A shift holds when a peak is found for most targets
(``label_shift_found_share``); the mean displacement differs from 0 by the one-sample test
over the targets (p below ``label_shift_p_max``) and, with 3 images or more, over the
per-image means (p below ``label_shift_image_p_max``: the same shift across images); the
mode of the displacements lies at least ``label_shift_min_px`` from 0; and most
displacements lie on the mean's side of the dominant axis (``label_shift_side_share``).
An error when the mode exceeds the match radius (the labels miss their peaks), else a
warning. Swapped axes: the peaks sit at the swapped positions (y, x) of
``label_shift_swap_share`` of the off-diagonal targets and ``label_shift_swap_gain`` times
more often than at (x, y). A displacement that follows the label's position in its cell
(slope share below -``label_shift_slope_max``) is the offset head's (a constant offset),
not a shift of the labels: no finding.

The remedy (``fix-labels``, advice) names the offset: move every label by the modal
displacement; a half-pixel shift on both axes is the point convention, ``--coords index0``
(+0.5 px) or ``--coords index1`` (-0.5 px).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convdiag.diagnosis.findings import Finding, Remedy
from convdiag.diagnosis.rules_common import Ctx, ev, pct
from convdiag.diagnosis.thresholds import Thresholds

CONVENTION_TOL_PX = 0.2  # |mean - (+-0.5, +-0.5)| per axis within this = a coords convention


def convention(mean: list[float]) -> str | None:
    """The ``--coords`` value that moves labels by a measured mean displacement (dx, dy)
    px: index0 adds 0.5 px to both axes, index1 subtracts 0.5 px; None for other shifts."""
    for value, shift in (("index0", 0.5), ("index1", -0.5)):
        if all(abs(v - shift) <= CONVENTION_TOL_PX for v in mean):
            return value
    return None


def consistent(d: dict[str, Any], th: Thresholds) -> list[float] | None:
    """The offset (dx, dy) px named by the displacement statistics ``d`` when they show a
    consistent shift (the conditions of the module docstring), else None."""
    mean = d.get("mean_px")
    if mean is None or not d.get("found") or d["found"] < th.min_targets:
        return None
    p = d["test_targets"].get("p")
    per_image = d["test_images"]
    p_img = per_image.get("p") if (per_image.get("n") or 0) >= 3 else None
    # the offset named: the mode of the displacements (clutter pulls the mean toward 0)
    vec = d.get("mode_px") or mean
    side = d.get("dominant_side_share")
    if (
        p is None
        or p >= th.label_shift_p_max
        or (p_img is not None and p_img >= th.label_shift_image_p_max)
        or side is None
        or side < th.label_shift_side_share
        or (d.get("found_share") or 0.0) < th.label_shift_found_share
        or float(np.hypot(vec[0], vec[1])) < th.label_shift_min_px
        or (d.get("dominant_slope_share") or 0.0) < -th.label_shift_slope_max
    ):
        return None
    return [float(vec[0]), float(vec[1])]


def swapped(sw: dict[str, Any], th: Thresholds) -> tuple[int, float, float] | None:
    """(targets, swapped hit share, direct hit share) when the swap shares ``sw`` show
    swapped axes, else None."""
    n, hit, direct = sw.get("targets") or 0, sw.get("swapped_hit_share"), sw.get("direct_hit_share")
    if n < th.min_targets or hit is None or direct is None:
        return None
    if hit < th.label_shift_swap_share or hit < th.label_shift_swap_gain * direct:
        return None
    return int(n), float(hit), float(direct)


def fix_text(dx: float, dy: float) -> tuple[str | None, str]:
    """(the --coords value, how to fix) for labels to be moved by (dx, dy) px."""
    coords = convention([dx, dy])
    if coords:
        half = 0.5 if coords == "index0" else -0.5
        return coords, f"read the points with --coords {coords} (moves them by {half:+g} px)"
    return None, f"move every label by ({dx:+.2f}, {dy:+.2f}) px"


def shift(c: Ctx) -> Finding | None:
    """label-shift for one level, or None (see the module docstring)."""
    d = c.res.get("displacement")
    if not d or not d.get("found"):
        return None
    th = c.th
    sw = swapped(d.get("swap") or {}, th)
    if sw is not None:
        return _swapped(c, *sw)
    vec = consistent(d, th)
    if vec is None:
        return None
    mean, test, per_image = d["mean_px"], d["test_targets"], d["test_images"]
    p = test["p"]
    p_img = per_image.get("p") if (per_image.get("n") or 0) >= 3 else None
    side, found = d.get("dominant_side_share"), d.get("found_share") or 0.0
    dx, dy = vec
    norm = float(np.hypot(dx, dy))
    severity = "error" if norm > c.radius else "warning"
    coords, how = fix_text(dx, dy)
    stride = int(d.get("stride") or 1)
    why = (
        f"the peaks sit ({dx:+.2f}, {dy:+.2f}) px ({dx / stride:+.2f}, {dy / stride:+.2f} "
        f"cells) from the labels on {pct(found)} of the targets; {how}, or fix the "
        "annotation's coordinate convention (0- vs 1-based, pixel corner vs centre)"
    )
    rem = [
        Remedy("fix-labels", {"dx": round(dx, 3), "dy": round(dy, 3), "coords": coords}, why, False)
    ]
    std = d["std_px"]
    return Finding(
        "label-shift",
        c.level,
        ev(
            shift_dx_px=dx,
            shift_dy_px=dy,
            coords=coords,
            p_value=p,
            side_share=side,
            mean_dx_px=float(mean[0]),
            mean_dy_px=float(mean[1]),
            mean_shift_px=float(d["mean_norm_px"]),
            mode_shift_px=norm,
            mode_share=d.get("mode_share"),
            std_dx_px=std[0],
            std_dy_px=std[1],
            radius_px=c.radius,
            found_share=found,
            reach_px=d.get("reach_px"),
            test_targets=test["n"],
            hotelling_t2=test["t2"],
            label_shift_p_max=th.label_shift_p_max,
            test_images=per_image.get("n"),
            p_value_images=p_img,
            label_shift_image_p_max=th.label_shift_image_p_max,
            slope_share=d.get("dominant_slope_share"),
            label_shift_slope_max=th.label_shift_slope_max,
            label_shift_side_share=th.label_shift_side_share,
            label_shift_min_px=th.label_shift_min_px,
            within_radius_share=d.get("within_radius_share"),
        ),
        f"At {c.level} the peaks sit at a consistent ({dx:+.2f}, {dy:+.2f}) px from their "
        f"labels: the mode of the vectors from each target to its nearest peak "
        f"({pct(d.get('mode_share'))} within {c.radius / 2:g} px of it; mean "
        f"({mean[0]:+.2f}, {mean[1]:+.2f}), spread {std[0]:.2f} / {std[1]:.2f} px; "
        f"{pct(side)} on one side, p = {p:.2g} over {test['n']} targets"
        + (f", {p_img:.2g} over {per_image['n']} images). " if p_img is not None else "). ")
        + (
            f"The shift exceeds the {c.radius:g} px match radius, so the targets are counted "
            "as missed and the peaks as false positives: the labels or their coordinate "
            "convention are off, not the model."
            if severity == "error"
            else "Detections still match, but every one is off by this much: check the "
            "labels' coordinate convention."
        )
        + f" Fix: {how}.",
        rem,
        severity=severity,
    )


def _swapped(c: Ctx, n: int, hit: float, direct: float) -> Finding:
    th = c.th
    why = (
        f"a peak lies within {c.radius:g} px of the swapped position (y, x) of {pct(hit)} of "
        f"the off-diagonal targets against {pct(direct)} at (x, y): swap the x and y columns "
        "of the labels"
    )
    return Finding(
        "label-shift",
        c.level,
        ev(
            swapped_axes=True,
            swap_targets=n,
            swapped_hit_share=hit,
            direct_hit_share=direct,
            label_shift_swap_share=th.label_shift_swap_share,
            label_shift_swap_gain=th.label_shift_swap_gain,
            radius_px=c.radius,
        ),
        f"At {c.level} the peaks sit at the labels with x and y swapped: {pct(hit)} of the "
        f"{n} targets off the diagonal have a peak within {c.radius:g} px of (y, x), "
        f"{pct(direct)} of (x, y). The labels' axes are swapped, not the model wrong. Fix: "
        "swap the x and y columns of the labels.",
        [Remedy("fix-labels", {"swap_xy": True}, why, False)],
    )


def agreement_shift(a: dict[str, Any], th: Thresholds, radius: float) -> Finding | None:
    """label-shift from the data alone (``labels``): two annotations of the same targets
    (``analyses.displacement.label_agreement``: a points table beside the masks, keypoints
    beside their boxes) disagree by a consistent vector or by swapped axes, by the same
    conditions as between peaks and labels. An error past the match radius."""
    if not a or not a.get("found"):
        return None
    labels, ref, trained = a["labels"], a["reference"], a["trained"]
    used = (
        f"convdiag trains on the {labels}"
        if trained == labels
        else f"convdiag trains on the {trained}, not on the {labels}; a tool trained on the "
        f"{labels} learns from labels off the targets"
    )
    base = dict(labels=labels, reference=ref, file=a["file"], images=a["images"], radius_px=radius)
    sw = swapped(a.get("swap") or {}, th)
    if sw is not None:
        n, hit, direct = sw
        how = f"swap the x and y of the {labels}"
        return Finding(
            "label-shift",
            None,
            ev(
                **base,
                swapped_axes=True,
                swap_targets=n,
                swapped_hit_share=hit,
                direct_hit_share=direct,
                label_shift_swap_share=th.label_shift_swap_share,
                label_shift_swap_gain=th.label_shift_swap_gain,
            ),
            f"The {labels} of {a['file']} have x and y swapped against the {ref}: {pct(hit)} "
            f"of the {n} targets off the diagonal have their {ref[:-1]} within {radius:g} px "
            f"of (y, x), {pct(direct)} of (x, y). {used}. Fix: {how}.",
            [Remedy("fix-labels", {"swap_xy": True, "labels": labels}, how, False)],
        )
    vec = consistent(a, th)
    if vec is None:
        return None
    dx, dy = vec
    norm = float(np.hypot(dx, dy))
    coords, how = fix_text(dx, dy)
    test, std = a["test_targets"], a["std_px"]
    return Finding(
        "label-shift",
        None,
        ev(
            **base,
            shift_dx_px=dx,
            shift_dy_px=dy,
            coords=coords,
            p_value=test["p"],
            mean_dx_px=float(a["mean_px"][0]),
            mean_dy_px=float(a["mean_px"][1]),
            std_dx_px=std[0],
            std_dy_px=std[1],
            found_share=a.get("found_share"),
            test_targets=test["n"],
            side_share=a.get("dominant_side_share"),
            label_shift_p_max=th.label_shift_p_max,
            label_shift_min_px=th.label_shift_min_px,
        ),
        f"The {labels} of {a['file']} and the {ref} disagree by a consistent "
        f"({dx:+.2f}, {dy:+.2f}) px (spread {std[0]:.2f} / {std[1]:.2f} px; "
        f"{pct(a.get('found_share'))} of {a['targets']} targets matched within "
        f"{a['reach_px']:g} px, p = {test['p']:.2g}): one of the two uses another coordinate "
        f"convention (0- vs 1-based, pixel corner vs centre). {used}. Fix: {how}.",
        [
            Remedy(
                "fix-labels",
                {"dx": round(dx, 3), "dy": round(dy, 3), "coords": coords, "labels": labels},
                how,
                False,
            )
        ],
        severity="error" if norm > radius else "warning",
    )


# What a label shift past the radius explains at its level: the failed matching reads as a
# collapse or a flood, whose loss and label remedies cannot move the labels.
EXPLAINED_BY_SHIFT = (
    "background-collapse",
    "calibration-collapse",
    "fp-flood",
    "gradient-starvation",
    "head-imbalance",
)


def withhold_explained(findings: list[Finding]) -> list[Finding]:
    """With a label-shift error at a level, the findings of EXPLAINED_BY_SHIFT at that level
    keep their evidence but lose their remedies, and say so."""
    shifted = {f.level for f in findings if f.id == "label-shift" and f.severity == "error"}
    for f in findings:
        if f.level in shifted and f.id in EXPLAINED_BY_SHIFT and f.remedies:
            f.remedies = []
            f.explanation += (
                f" Its remedies are withheld: the label shift at {f.level} explains it "
                "(the targets are scored against labels that miss their peaks)."
            )
    return findings
