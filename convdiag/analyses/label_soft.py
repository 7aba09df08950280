"""Soft-label statistics of one level: positive mass, overlaps and the combined values of
neighbouring targets' windows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from convdiag.analyses.label_inputs import _grad_shares, _LevelCells
from convdiag.targets.constant_loss import (  # noqa: F401  (re-exported)
    FOCAL_ALPHA,
    FOCAL_BETA,
    _minimise_logit,
    _softplus,
    constant_loss,
)
from convdiag.targets.labels import (
    displacement_table,
    window_start,
)


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
