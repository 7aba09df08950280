"""Label statistics per level, pooled over a dataset, without rendering full label maps.

Everything is computed from the target points and the image sizes (DESIGN.md "Statistics
are pooled"): totals over all images, fractions as total over total, per-target figures over
all targets. Hard figures come from sorting (image, cell) keys; soft figures from a
summed-area table of the truncated Gaussian window (clipped at the borders) for targets
whose windows overlap nobody, and from rendering only the windows of overlapping targets,
combined by maximum, so the soft mass is exact.

Losses of the best constant predictor use the training losses' normalisation (shared with
``convdiag.targets.losses``); the initial gradient share is taken at a head whose every logit is
logit(prior), prior = the mean label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from convdiag.analyses.label_inputs import (
    _gather,
    _grad_shares,
    _level_cells,
    _LevelCells,
    _Targets,
    focal_grad_magnitudes,
)
from convdiag.analyses.label_soft import _soft_stats
from convdiag.errors import InputError
from convdiag.targets.constant_loss import (  # noqa: F401  (re-exported)
    FOCAL_ALPHA,
    FOCAL_BETA,
    _minimise_logit,
    _softplus,
    constant_loss,
)
from convdiag.targets.geometry import level_name, stride_of
from convdiag.targets.labels import (
    DEFAULT_SIGMA,
    DEFAULT_TRUNC,
    Schedule,
    check_soft_params,
)

DEFAULT_LEVELS = ("P2", "P3", "P4", "P5")
MATCH_RADIUS = 3.0
# The seed: dim targets spread over 2-3 pixels, a ~5x5 px footprint -> radius ~2.5 px.
SEED_TARGET_RADIUS = 2.5
COLLISION_SHARE_MAX = 0.01
NEG_PER_POS_MAX = 1000.0
QUANT_SHARE_OF_RADIUS = 0.9  # p95 above this share of the radius: little room for error
SIGMA_RANGE = (0.8, 1.2)
KERNEL_RANGE = (3, 5)


# --------------------------------------------------------------------------- hard statistics


def _quantiles(q: np.ndarray) -> dict[str, float | None]:
    if len(q) == 0:
        return {"mean": None, "p95": None, "max": None}
    return {
        "mean": float(q.mean()),
        "p95": float(np.percentile(q, 95)),
        "max": float(q.max()),
    }


def _hard_stats(t: _Targets, lc: _LevelCells, radius: float) -> dict[str, Any]:
    n_img = t.n_images
    n_targets = len(lc.key)
    cells_total = int((lc.hb * lc.wb).sum())
    pos = int(lc.first.sum())
    dup = ~lc.first[1:]
    in_group = np.zeros(n_targets, dtype=bool)
    in_group[1:] |= dup
    in_group[:-1] |= dup
    collisions = int(in_group.sum())
    per_image = np.bincount(lc.img[lc.first], minlength=n_img)
    s = lc.stride
    q = np.hypot(lc.off[:, 0] - 0.5, lc.off[:, 1] - 0.5) * s
    quant = _quantiles(q)
    neg = cells_total - pos
    prior = pos / cells_total
    shares = _grad_shares(
        prior,
        cells_total,
        pos_abs_bce=pos * (1 - prior),
        all_abs_bce=pos * (1 - prior) + neg * prior,
        n_ones=pos,
        sum_neg_weight=neg,
        pos_abs_zero=0.5 * pos,
        all_abs_zero=0.5 * cells_total,
    )
    uniform = bool((lc.hb == lc.hb[0]).all() and (lc.wb == lc.wb[0]).all())
    return {
        "stride": s,
        "grid": [int(lc.hb[0]), int(lc.wb[0])] if uniform else None,
        "grid_min": [int(lc.hb.min()), int(lc.wb.min())],
        "grid_max": [int(lc.hb.max()), int(lc.wb.max())],
        "images": n_img,
        "targets": n_targets,
        "targets_outside": lc.outside,
        "cells": cells_total,
        "positive_cells": pos,
        "pos_fraction": prior,
        "neg_per_pos": neg / pos if pos else None,
        "positives_per_image": {"mean": pos / n_img, "max": int(per_image.max())},
        "collisions": collisions,
        "collision_share": collisions / n_targets if n_targets else 0.0,
        "quantization_px": {
            **quant,
            "radius": radius,
            "share_over_radius": float((q > radius).mean()) if n_targets else 0.0,
            "p95_over_radius": None if quant["p95"] is None else quant["p95"] > radius,
        },
        "constant_loss": {
            "bce": constant_loss("bce", cells_total, pos, pos, neg),
            "focal": constant_loss("focal", cells_total, pos, pos, neg),
        },
        "initial_pos_grad_share": shares["bce"],
        "initial_pos_grad_share_zero_bias": shares["bce_zero_bias"],
        "initial_pos_grad_share_focal": shares["focal"],
    }


# --------------------------------------------------------------------------- recommendation


def sigma_for(stride: int, target_radius_px: float) -> float:
    """sigma (cells) = target radius / stride, clamped to the seed's 0.8-1.2, to 0.05."""
    raw = target_radius_px / stride
    return float(round(min(max(raw, SIGMA_RANGE[0]), SIGMA_RANGE[1]) * 20) / 20)


def kernel_for(sigma: float, trunc: float) -> int:
    """Smallest odd window holding every cell with exp(-d^2/(2 sigma^2)) >= trunc, in 3..5.

    Half-width along an axis: floor(sigma * sqrt(2 ln(1/trunc))).
    """
    reach = math.inf if trunc <= 0 else sigma * math.sqrt(2 * math.log(1 / trunc))
    k = KERNEL_RANGE[1] if reach > 10 else 2 * math.floor(reach + 1e-12) + 1
    return int(min(max(k, KERNEL_RANGE[0]), KERNEL_RANGE[1]))


def _target_radius(settings: dict[str, Any]) -> tuple[float, str]:
    r = settings.get("target_radius_px")
    if r is None:
        return SEED_TARGET_RADIUS, "the seed's dim targets (2-3 px spread, ~5x5 px footprint)"
    return float(r), "the median target radius given"


def recommend(stats: dict[str, Any]) -> dict[str, Any]:
    """Level, label kind, kernel and sigma to use, each with the numbers that justify it.

    Level: the finest analysed level whose quantisation p95 is under the match radius and
    whose collision share is < 1% (else the finest with few collisions, else the finest).
    Labels: soft when negatives per positive at that level exceed 1000. sigma = target
    radius / stride clamped to 0.8-1.2; kernel = kernel_for(sigma, trunc).
    """
    settings = stats.get("settings", {})
    radius = float(settings.get("radius", MATCH_RADIUS))
    trunc = float(settings.get("trunc", DEFAULT_TRUNC))
    levels = sorted(stats["levels"].items(), key=lambda kv: kv[1]["stride"])
    if not levels:
        raise ValueError("no levels in stats")

    def p95(v: dict[str, Any]) -> float:
        q = v["quantization_px"]["p95"]
        return 0.0 if q is None else float(q)

    good = [(k, v) for k, v in levels if p95(v) < radius and v["collision_share"] < 0.01]
    few = [(k, v) for k, v in levels if v["collision_share"] < COLLISION_SHARE_MAX]
    rejected = []
    if good:
        name, v = good[0]
        why = (
            f"finest level with quantisation p95 {p95(v):.2f} px < match radius {radius:g} px "
            f"and collisions {v['collision_share']:.2%} < 1%"
        )
    elif few:
        name, v = few[0]
        why = (
            f"no level keeps quantisation p95 under {radius:g} px; finest with collisions "
            f"{v['collision_share']:.2%} < 1% (the offset head must localise: p95 {p95(v):.2f} px)"
        )
    else:
        name, v = levels[0]
        why = f"every level has >= 1% collisions; finest level ({v['collision_share']:.2%})"
    for k, w in levels:
        if w["stride"] >= v["stride"]:
            break
        reasons = []
        if p95(w) >= radius:
            reasons.append(f"p95 {p95(w):.2f} px >= {radius:g} px")
        if w["collision_share"] >= COLLISION_SHARE_MAX:
            reasons.append(f"collisions {w['collision_share']:.2%}")
        rejected.append(f"{k}: {', '.join(reasons)}")
    if rejected:
        why += "; finer levels rejected (" + "; ".join(rejected) + ")"

    stride = int(v["stride"])
    npp = v["neg_per_pos"]
    soft = npp is not None and npp > NEG_PER_POS_MAX
    if npp is None:
        labels_why = f"no positives at {name}"
    elif soft:
        labels_why = (
            f"{npp:,.0f} negatives per positive at {name} > 1,000: hard one-cell labels "
            "invite the all-background solution"
        )
    else:
        labels_why = f"{npp:,.0f} negatives per positive at {name} <= 1,000: hard labels suffice"
    radius_px, radius_src = _target_radius(settings)
    sigma = sigma_for(stride, radius_px)
    sigma_why = (
        f"target radius {radius_px:g} px ({radius_src}) / stride {stride} = "
        f"{radius_px / stride:.2f} cells, clamped to {SIGMA_RANGE[0]}-{SIGMA_RANGE[1]}"
    )
    kernel = kernel_for(sigma, trunc)
    half = kernel // 2
    edge = math.exp(-(half**2) / (2 * sigma**2))
    beyond = math.exp(-((half + 1) ** 2) / (2 * sigma**2))
    kernel_why = (
        f"Gaussian at {half} cell(s) = {edge:.3f}"
        + (" >=" if edge >= trunc else " <")
        + f" trunc {trunc:g}, at {half + 1} = {beyond:.3f}"
        + (f" < {trunc:g}" if beyond < trunc else f" (clamped to {KERNEL_RANGE[1]})")
    )
    remedies = []
    if soft:
        remedies.append(
            {
                "id": "soft-labels",
                "params": {"kernel": kernel, "sigma": sigma, "trunc": trunc},
                "why": f"{labels_why}; {kernel}x{kernel}, sigma {sigma:g}",
                "applied": True,
            }
        )
    return {
        "level": name,
        "stride": stride,
        "labels": "soft" if soft else "hard",
        "kernel": kernel,
        "sigma": sigma,
        "trunc": trunc,
        "why": {"level": why, "labels": labels_why, "sigma": sigma_why, "kernel": kernel_why},
        "evidence": {
            "quantization_p95_px": p95(v),
            "radius_px": radius,
            "collision_share": v["collision_share"],
            "neg_per_pos": npp,
            "target_radius_px": radius_px,
        },
        "remedies": remedies,
    }


# --------------------------------------------------------------------------- entry point


def label_measurements(
    records: Sequence[tuple[tuple[int, int], Any]],
    levels: Sequence[str | int] = DEFAULT_LEVELS,
    kernel: int | None = None,
    sigma: float | None = None,
    trunc: float = DEFAULT_TRUNC,
    schedule: Schedule | None = None,
    *,
    radius: float = MATCH_RADIUS,
    target_radius_px: float | np.ndarray | None = None,
) -> dict[str, Any]:
    """Label statistics per level and a recommendation, as plain data (the risks are judged
    by ``convdiag.diagnosis.labels.label_statistics``, which calls this).

    records: (size (H, W), points [N, 2] (x, y)) per image. Soft statistics are added when
    ``kernel`` (sigma default 1.0) or ``schedule`` is given; with a schedule, ``soft`` holds
    the first phase (progress 0) and ``soft["phases"]`` every phase. ``radius``: match
    radius (px). ``target_radius_px``: one radius or per-target radii (median used) for the
    sigma recommendation; default the seed's 2.5 px.

    Returns ``{"settings", "levels": {"P2": {...}, ...},
    "recommendation": {...}}`` (shape in docs of the ``labels`` command).
    """
    t = _gather(records)
    names = [level_name(lv) for lv in levels]
    if not names:
        raise InputError("--levels: no level given")
    if len(set(names)) != len(names):
        names = list(dict.fromkeys(names))
    if not (math.isfinite(radius) and radius > 0):
        raise InputError(f"--radius {radius!r}: must be a positive number")
    phases: list[tuple[float, int, float]] = []
    if schedule is not None:
        phases = list(schedule.phases)
        for _, k, s in phases:
            check_soft_params(k, s, trunc)
    elif kernel is not None:
        sig = DEFAULT_SIGMA if sigma is None else float(sigma)
        check_soft_params(kernel, sig, trunc)
        phases = [(1.0, int(kernel), sig)]
    tr: float | None = None
    if target_radius_px is not None:
        arr = np.asarray(target_radius_px, dtype=np.float64).reshape(-1)
        arr = arr[np.isfinite(arr) & (arr > 0)]
        tr = float(np.median(arr)) if len(arr) else None
    settings = {
        "levels": names,
        "labels": "soft" if phases else "hard",
        "kernel": phases[0][1] if phases else None,
        "sigma": phases[0][2] if phases else None,
        "trunc": float(trunc),
        "schedule": str(schedule) if schedule is not None else None,
        "radius": float(radius),
        "target_radius_px": tr,
    }
    out: dict[str, Any] = {"settings": settings, "levels": {}}
    for name in names:
        lc = _level_cells(t, stride_of(name))
        st = _hard_stats(t, lc, radius)
        if phases:
            per_phase = []
            for end, k, s in phases:
                ph = _soft_stats(lc, k, s, trunc, st)
                per_phase.append({"end": end, **ph} if schedule is not None else ph)
            soft = dict(per_phase[0])
            if schedule is not None:
                soft["schedule"] = str(schedule)
                soft["phases"] = per_phase
            st["soft"] = soft
        else:
            st["soft"] = None
        out["levels"][name] = st
    out["recommendation"] = recommend(out)
    return out


__all__ = [
    "DEFAULT_LEVELS",
    "constant_loss",
    "focal_grad_magnitudes",
    "kernel_for",
    "label_measurements",
    "recommend",
    "sigma_for",
]
