"""The inputs of the label statistics: targets gathered over a dataset and their cells
at one level."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convdiag.errors import InputError
from convdiag.targets.constant_loss import (  # noqa: F401  (re-exported)
    FOCAL_ALPHA,
    FOCAL_BETA,
    _minimise_logit,
    _softplus,
    constant_loss,
)


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


def focal_grad_magnitudes(p: float, alpha: float = FOCAL_ALPHA) -> tuple[float, float]:
    """|dL/dz| of CenterNet focal terms at probability p (per unit weight).

    positive: d/dz[-(1-p)^a log p] = -(1-p)^a [(1-p) - a p log p];
    negative: d/dz[-p^a log(1-p)] = p^a [p - a (1-p) log(1-p)]. Returns (|pos|, |neg|).
    """
    pos = (1 - p) ** alpha * ((1 - p) - alpha * p * math.log(p))
    neg = p**alpha * (p - alpha * (1 - p) * math.log1p(-p))
    return float(pos), float(neg)
