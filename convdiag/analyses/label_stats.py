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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convdiag.diagnosis.findings import Finding, Remedy
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
    displacement_table,
    window_start,
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


def focal_grad_magnitudes(p: float, alpha: float = FOCAL_ALPHA) -> tuple[float, float]:
    """|dL/dz| of CenterNet focal terms at probability p (per unit weight).

    positive: d/dz[-(1-p)^a log p] = -(1-p)^a [(1-p) - a p log p];
    negative: d/dz[-p^a log(1-p)] = p^a [p - a (1-p) log(1-p)]. Returns (|pos|, |neg|).
    """
    pos = (1 - p) ** alpha * ((1 - p) - alpha * p * math.log(p))
    neg = p**alpha * (p - alpha * (1 - p) * math.log1p(-p))
    return float(pos), float(neg)


# --------------------------------------------------------------------------- inputs


@dataclass
class _Targets:
    """All targets of a dataset: points [N, 2] (x, y), image index [N], sizes [B, 2] (H, W)."""

    points: np.ndarray
    img: np.ndarray
    sizes: np.ndarray

    @property
    def n_images(self) -> int:
        return len(self.sizes)


def _gather(records: Sequence[tuple[tuple[int, int], Any]]) -> _Targets:
    if len(records) == 0:
        raise InputError("dataset has no images")
    sizes = np.array([r[0] for r in records], dtype=np.int64).reshape(len(records), 2)
    if (sizes < 1).any():
        bad = int(np.nonzero((sizes < 1).any(axis=1))[0][0])
        raise InputError(f"image {bad}: bad size {tuple(sizes[bad])}")
    arrays = [r[1] for r in records]
    try:
        pts = np.concatenate(arrays).astype(np.float64, copy=False).reshape(-1, 2)
        counts = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
        if counts.sum() != len(pts) or pts.ndim != 2:
            raise ValueError
    except ValueError:  # empty 1-D arrays, lists, mixed shapes: one by one
        arrays = [np.asarray(a, dtype=np.float64).reshape(-1, 2) for a in arrays]
        counts = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
        pts = np.concatenate(arrays) if counts.sum() else np.zeros((0, 2))
    if not np.isfinite(pts).all():
        raise InputError("target points: non-finite coordinates")
    return _Targets(pts, np.repeat(np.arange(len(arrays), dtype=np.int64), counts), sizes)


@dataclass
class _LevelCells:
    """Targets inside their image's grid at one level, sorted by (image, cell)."""

    stride: int
    hb: np.ndarray  # [B] grid heights
    wb: np.ndarray  # [B] grid widths
    cell_base: np.ndarray  # [B] first global cell index of each image
    img: np.ndarray  # [N] image of each target
    ci: np.ndarray
    cj: np.ndarray
    off: np.ndarray  # [N, 2] (dx, dy)
    key: np.ndarray  # [N] global cell index, sorted
    first: np.ndarray  # [N] bool: first target of its cell
    outside: int


def _level_cells(t: _Targets, stride: int) -> _LevelCells:
    hb = -(-t.sizes[:, 0] // stride)
    wb = -(-t.sizes[:, 1] // stride)
    cells = hb * wb
    base = np.concatenate([[0], np.cumsum(cells)[:-1]]).astype(np.int64)
    scaled = t.points / stride
    ci = np.floor(scaled[:, 1]).astype(np.int64)
    cj = np.floor(scaled[:, 0]).astype(np.int64)
    img = t.img
    inside = (ci >= 0) & (ci < hb[img]) & (cj >= 0) & (cj < wb[img])
    outside = int(len(inside) - inside.sum())
    if outside:
        ci, cj, img, scaled = ci[inside], cj[inside], img[inside], scaled[inside]
    key = base[img] + ci * wb[img] + cj
    order = np.argsort(key, kind="stable")
    key, ci, cj, img, scaled = key[order], ci[order], cj[order], img[order], scaled[order]
    off = scaled - np.stack([cj, ci], axis=1)
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    return _LevelCells(stride, hb, wb, base, img, ci, cj, off, key, first, outside)


# --------------------------------------------------------------------------- hard statistics


def _quantiles(q: np.ndarray) -> dict[str, float | None]:
    if len(q) == 0:
        return {"mean": None, "p95": None, "max": None}
    return {
        "mean": float(q.mean()),
        "p95": float(np.percentile(q, 95)),
        "max": float(q.max()),
    }


def _grad_shares(
    prior: float,
    n_cells: float,
    pos_abs_bce: float,
    all_abs_bce: float,
    n_ones: float,
    sum_neg_weight: float,
    pos_abs_zero: float,
    all_abs_zero: float,
) -> dict[str, float | None]:
    """Shares of |dL/dz| carried by positives: BCE at the prior, BCE at p=0.5, focal at prior."""
    if not 0 < prior < 1:
        return {"bce": None, "bce_zero_bias": None, "focal": None}
    gp, gn = focal_grad_magnitudes(prior)
    focal_pos = n_ones * gp
    focal_all = focal_pos + sum_neg_weight * gn
    return {
        "bce": pos_abs_bce / all_abs_bce if all_abs_bce > 0 else None,
        "bce_zero_bias": pos_abs_zero / all_abs_zero if all_abs_zero > 0 else None,
        "focal": focal_pos / focal_all if focal_all > 0 else None,
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


# --------------------------------------------------------------------------- soft statistics


def _support_radius(sigma: float, trunc: float, kernel: int) -> int:
    """Largest |d| (cells) along an axis with exp(-d^2 / (2 sigma^2)) >= trunc, within k//2."""
    t, r = displacement_table(kernel, sigma, trunc)
    row = t[r, r:]
    return int(np.nonzero(row > 0)[0].max())


def _overlapping(
    img: np.ndarray,
    row: np.ndarray,
    r0: np.ndarray,
    r1: np.ndarray,
    c0: np.ndarray,
    c1: np.ndarray,
    reach: int,
) -> np.ndarray:
    """Targets whose rectangles [r0, r1] x [c0, c1] (inclusive) meet another's in the same image.

    Targets come sorted by (image, row) with r0 >= row - reach and r1 <= row + reach, so two
    rectangles can only meet when their rows differ by at most 2 reach: compare each target
    with its m-th successor for m = 1, 2, ... while any pair is still that close.
    """
    n = len(img)
    hit = np.zeros(n, dtype=bool)
    for m in range(1, n):
        # slices, not gathers: pair (i, i + m) for every i at once
        cand = (img[:-m] == img[m:]) & (row[m:] - row[:-m] <= 2 * reach)
        if not cand.any():
            break
        i = np.flatnonzero(cand)
        u = i + m
        meet = (r0[u] <= r1[i]) & (r0[i] <= r1[u]) & (c0[u] <= c1[i]) & (c0[i] <= c1[u])
        hit[i[meet]] = True
        hit[u[meet]] = True
    return hit


def _max_combined_values(
    lc: _LevelCells, sel: np.ndarray, kernel: int, sigma: float, trunc: float
) -> np.ndarray:
    """Label values of every cell covered by the windows of targets ``sel`` (max-combined).

    Renders only those windows: (global cell key, value) pairs, sorted, max per key.
    """
    t, r = displacement_table(kernel, sigma, trunc)
    size = 2 * r + 1
    ci, cj, g = lc.ci[sel], lc.cj[sel], lc.img[sel]
    hb, wb, base = lc.hb[g], lc.wb[g], lc.cell_base[g]
    d = np.arange(kernel)
    dy = window_start(lc.off[sel, 1], kernel)[:, None] + d  # [M, k]
    dx = window_start(lc.off[sel, 0], kernel)[:, None] + d
    rows = ci[:, None] + dy
    cols = cj[:, None] + dx
    row_ok = (rows >= 0) & (rows < hb[:, None])
    col_ok = (cols >= 0) & (cols < wb[:, None])
    vals = t.ravel()[(dy[:, :, None] + r) * size + (dx[:, None, :] + r)]  # [M, k, k]
    keys = (base[:, None, None] + rows[:, :, None] * wb[:, None, None]) + cols[:, None, :]
    keep = row_ok[:, :, None] & col_ok[:, None, :] & (vals > 0)
    keys, vals = keys[keep], vals[keep]
    if not len(keys):
        return vals
    order = np.argsort(keys, kind="stable")  # nearly sorted: targets come in cell order
    keys, vals = keys[order], vals[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return np.maximum.reduceat(vals, starts)


def _soft_stats(
    lc: _LevelCells, kernel: int, sigma: float, trunc: float, hard: dict[str, Any]
) -> dict[str, Any]:
    """Soft-label statistics (exact max-combined mass) for one (kernel, sigma, trunc).

    Every target's clipped window is one of few classes (even-k shift per axis and the
    rows/columns cut at each border), so per-window sums of any f(y) come from the class's
    sum on the displacement table; targets whose windows meet are rendered exactly.
    """
    t, r = displacement_table(kernel, sigma, trunc)
    n = len(lc.key)
    cells_total = float(hard["cells"])
    hb, wb = lc.hb[lc.img], lc.wb[lc.img]
    # window displacement ranges per axis [lo, hi), clipped at the grid border
    sy = window_start(lc.off[:, 1], kernel)
    sx = window_start(lc.off[:, 0], kernel)
    y_lo, y_hi = np.maximum(sy, -lc.ci), np.minimum(sy + kernel, hb - lc.ci)
    x_lo, x_hi = np.maximum(sx, -lc.cj), np.minimum(sx + kernel, wb - lc.cj)

    # class of each clipped window: displacement ranges, shifted into [0, 2r]
    size = 2 * r + 1
    cls = (((y_lo + r) * (size + 1) + (y_hi + r)) * (size + 1) + (x_lo + r)) * (size + 1) + (
        x_hi + r
    )
    n_cls = (size + 1) ** 4
    if n_cls <= 4_000_000:
        all_count = np.bincount(cls, minlength=n_cls)
        uniq = np.flatnonzero(all_count)
        all_count = all_count[uniq]
        inv = np.searchsorted(uniq, cls)
    else:
        uniq, inv = np.unique(cls, return_inverse=True)
        all_count = np.bincount(inv, minlength=len(uniq))
    cy_lo, rem = np.divmod(uniq, (size + 1) ** 3)
    cy_hi, rem = np.divmod(rem, (size + 1) ** 2)
    cx_lo, cx_hi = np.divmod(rem, size + 1)

    def class_sums(values: np.ndarray) -> np.ndarray:
        """Sum of values[dy + r, dx + r] over each class's window (summed-area table)."""
        sat = np.zeros((size + 1, size + 1))
        sat[1:, 1:] = values.cumsum(0).cumsum(1)
        return sat[cy_hi, cx_hi] - sat[cy_lo, cx_hi] - sat[cy_hi, cx_lo] + sat[cy_lo, cx_lo]

    own_cells = class_sums((t > 0).astype(np.float64))
    own_mass = class_sums(t)

    # rectangles of the non-zero support, to find targets whose labels meet
    rs = _support_radius(sigma, trunc, kernel)
    r0 = lc.ci + np.maximum(y_lo, -rs)
    r1 = lc.ci + np.minimum(y_hi - 1, rs)
    c0 = lc.cj + np.maximum(x_lo, -rs)
    c1 = lc.cj + np.minimum(x_hi - 1, rs)
    ov = _overlapping(lc.img, lc.ci, r0, r1, c0, c1, rs)
    n_ov = int(ov.sum())
    ov_vals = _max_combined_values(lc, ov, kernel, sigma, trunc) if n_ov else np.zeros(0)
    solo_count = all_count - np.bincount(inv[ov], minlength=len(uniq))

    def total(fn: Callable[[np.ndarray], np.ndarray]) -> float:
        """Sum of fn(y) over every labelled cell (y > 0) of the dataset."""
        table = np.where(t > 0, fn(t), 0.0)
        return float(solo_count @ class_sums(table) + fn(ov_vals).sum())

    mass = total(lambda y: y)
    n_support = total(np.ones_like)
    n_ones = float(hard["positive_cells"])
    n_zero = cells_total - n_support
    neg_weight = n_zero + total(lambda y: (1 - y) ** FOCAL_BETA)
    prior = mass / cells_total
    abs_prior = total(lambda y: np.abs(prior - y))
    abs_zero = total(lambda y: np.abs(0.5 - y))
    shares = _grad_shares(
        prior,
        cells_total,
        pos_abs_bce=abs_prior,
        all_abs_bce=abs_prior + n_zero * prior,
        n_ones=n_ones,
        sum_neg_weight=neg_weight,
        pos_abs_zero=abs_zero,
        all_abs_zero=abs_zero + 0.5 * n_zero,
    )
    present = all_count > 0
    return {
        "kernel": int(kernel),
        "sigma": float(sigma),
        "trunc": float(trunc),
        "positive_mass": mass,
        "mass_per_target": mass / n if n else None,
        "nonzero_cells": round(n_support),
        "nonzero_fraction": n_support / cells_total,
        "mass_fraction": prior,
        "neg_per_pos": (cells_total - mass) / mass if mass else None,
        "nonzero_cells_per_target": {
            "mean": float(all_count @ own_cells / n) if n else None,
            "min": int(own_cells[present].min()) if n else None,
        },
        "window_mass_per_target": {
            "mean": float(all_count @ own_mass / n) if n else None,
            "min": float(own_mass[present].min()) if n else None,
        },
        "overlaps": n_ov,
        "overlap_share": n_ov / n if n else 0.0,
        "constant_loss": {
            "bce": constant_loss("bce", cells_total, n_ones, mass, neg_weight),
            "focal": constant_loss("focal", cells_total, n_ones, mass, neg_weight),
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
            Remedy(
                "soft-labels",
                {"kernel": kernel, "sigma": sigma, "trunc": trunc},
                why=f"{labels_why}; {kernel}x{kernel}, sigma {sigma:g}",
            ).to_dict()
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


# --------------------------------------------------------------------------- findings


def _findings(stats: dict[str, Any]) -> list[Finding]:
    radius = float(stats["settings"]["radius"])
    trunc = float(stats["settings"]["trunc"])
    radius_px, _ = _target_radius(stats["settings"])
    levels = sorted(stats["levels"].items(), key=lambda kv: kv[1]["stride"])
    out: list[Finding] = []
    for name, v in levels:
        q = v["quantization_px"]
        finer = [
            k
            for k, w in levels
            if w["stride"] < v["stride"] and (w["quantization_px"]["p95"] or 0) < radius
        ]
        if q["p95"] is not None and q["p95"] > QUANT_SHARE_OF_RADIUS * radius:
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
                        "threshold_px": QUANT_SHARE_OF_RADIUS * radius,
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
        if v["collision_share"] > COLLISION_SHARE_MAX:
            finer_c = [
                k for k, w in levels if w["stride"] < v["stride"] and w["collision_share"] <= 0.01
            ]
            out.append(
                Finding(
                    "label-collision",
                    name,
                    {
                        "collisions": v["collisions"],
                        "targets": v["targets"],
                        "collision_share": v["collision_share"],
                        "threshold": COLLISION_SHARE_MAX,
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
        if npp is not None and npp > NEG_PER_POS_MAX:
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
                        "threshold": NEG_PER_POS_MAX,
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


# --------------------------------------------------------------------------- entry point


def label_statistics(
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
    """Label statistics per level, findings (risks) and a recommendation, as plain data.

    records: (size (H, W), points [N, 2] (x, y)) per image. Soft statistics are added when
    ``kernel`` (sigma default 1.0) or ``schedule`` is given; with a schedule, ``soft`` holds
    the first phase (progress 0) and ``soft["phases"]`` every phase. ``radius``: match
    radius (px). ``target_radius_px``: one radius or per-target radii (median used) for the
    sigma recommendation; default the seed's 2.5 px.

    Returns ``{"settings", "levels": {"P2": {...}, ...}, "findings": [...],
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
    out["findings"] = [f.to_dict() for f in _findings(out)]
    out["recommendation"] = recommend(out)
    return out


__all__ = [
    "DEFAULT_LEVELS",
    "constant_loss",
    "focal_grad_magnitudes",
    "kernel_for",
    "label_statistics",
    "recommend",
    "sigma_for",
]
