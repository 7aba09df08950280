"""Displacement of the peaks from the labels: do the predictions sit at a fixed offset?

For every target point t of an image, the nearest decoded peak p among the image's top
2N peaks (N targets; ``decode`` at threshold 0) within ``reach`` = max(REACH_CELLS x
stride, 2 r) pixels gives the displacement d = p - t (px, (dx, dy)). Pooled from sums:

    mean  m = sum d / n,   covariance S = (sum d d^T - n m m^T) / (n - 1)
    Hotelling T^2 = n m^T (S + eps I)^-1 m,  F = T^2 (n - 2) / (2 (n - 1)) ~ F(2, n - 2)
    per-axis t = m_a / sqrt(S_aa / n)

with eps = (0.05 px)^2 so identical displacements still give a finite statistic. The same
test on the per-image mean displacements (k images with a peak found) says whether the
offset is consistent across images. Side share: per axis, the share of non-zero
displacements with the sign of the mean. Swapped axes: for the targets whose swapped
position (y, x) lies inside the image and at least 2r from (x, y), the share with a peak
within r of (y, x) against the share with one within r of (x, y).

Position in the cell: per axis, the least-squares slope of d on the label's position in its
cell u = frac(t / stride), as a share of the stride (slope_share = cov(d, u) / var(u) /
stride). A shifted label set gives ~0 (every target moves alike); an offset head that
predicts a constant c gives d = (c - u) stride, a slope share of ~-1: the displacement is
the offset head's, not the labels'.

Mode: clutter peaks nearer than the true one pull the mean toward 0, so the offset named
is the mode of the displacements: a 2-D histogram over [-reach, reach]^2 (HIST_BINS bins a
side) holding the count and the sum of d per bin; the densest disk of radius r / 2
(counts convolved with the disk), then MODE_STEPS mean-shift steps, each the mean of the
displacements in the bins whose centre lies within r / 2 of the current centre.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from convdiag.analyses.base import AnalysisStep, SumState, safe_div
from convdiag.load.sample import LabelPairs

REACH_CELLS = 3.0
EPS_PX = 0.05
HIST_BINS = 96
MODE_STEPS = 3


def nearest_peaks(
    peaks: np.ndarray, targets: np.ndarray, reach: float
) -> tuple[np.ndarray, np.ndarray]:
    """For targets [N, 2] (x, y) and peaks [K, 2]: (found bool [N], d [N, 2] = nearest peak
    - target, px; rows not found are 0). A peak is found when its distance is <= reach."""
    t = np.asarray(targets, np.float64).reshape(-1, 2)
    p = np.asarray(peaks, np.float64).reshape(-1, 2)
    if len(p) == 0 or len(t) == 0:
        return np.zeros(len(t), bool), np.zeros((len(t), 2))
    diff = p[None, :, :] - t[:, None, :]  # [N, K, 2]
    dist = np.hypot(diff[..., 0], diff[..., 1])
    k = np.argmin(dist, axis=1)
    rows = np.arange(len(t))
    found = dist[rows, k] <= reach
    d = np.where(found[:, None], diff[rows, k], 0.0)
    return found, d


def hotelling(n: float, s: np.ndarray, ss: np.ndarray) -> dict[str, Any]:
    """One-sample Hotelling test of mean 0 from n, sum s [2] and sum of outer products ss
    [2, 2] (see the module docstring); None values when n < 3."""
    if n < 3:
        return {"n": int(n), "t2": None, "p": None, "t": None}
    m = s / n
    cov = (ss - n * np.outer(m, m)) / (n - 1)
    cov = 0.5 * (cov + cov.T) + EPS_PX**2 * np.eye(2)
    t2 = float(n * m @ np.linalg.solve(cov, m))
    f = t2 * (n - 2) / (2 * (n - 1))
    p = float(stats.f.sf(f, 2, n - 2))
    t_axes = [float(m[a] / math.sqrt(cov[a, a] / n)) for a in range(2)]
    return {"n": int(n), "t2": t2, "p": p, "t": t_axes}


class DisplacementAnalysis(SumState):
    """Peak-to-label displacement statistics at one level."""

    name = "displacement"

    def __init__(self, stride: int, radius: float = 3.0) -> None:
        super().__init__()
        self.stride = int(stride)
        self.radius = float(radius)
        self.reach = max(REACH_CELLS * self.stride, 2.0 * self.radius)

    def update(self, step: AnalysisStep) -> None:
        """Add the targets of one batch: per image its top 2N finite-scored peaks."""
        for (pts, scores), gt, size in zip(step.preds, step.points, step.sizes, strict=True):
            g = np.asarray(gt, np.float64).reshape(-1, 2)
            s = np.asarray(scores, np.float64).reshape(-1)
            keep = np.flatnonzero(np.isfinite(s))[: 2 * len(g)]
            self.add_image(np.asarray(pts, np.float64).reshape(-1, 2)[keep], g, size)

    def add_image(self, peaks: np.ndarray, targets: np.ndarray, size: tuple[int, int]) -> None:
        """Add one image: peaks [K, 2] and targets [N, 2] (x, y) px, size (H, W). Also
        used between two annotations of the same targets (``label_agreement``)."""
        r = self.radius
        g = np.asarray(targets, np.float64).reshape(-1, 2)
        p = np.asarray(peaks, np.float64).reshape(-1, 2)
        hh, ww = size
        if len(g) == 0:
            return
        found, d = nearest_peaks(p, g, self.reach)
        self._add("targets", float(len(g)))
        self._add("found", float(found.sum()))
        df = d[found]
        if len(df):
            self._add("sd", df.sum(0))
            self._add("sdd", df.T @ df)
            self._add("pos", (df > 1e-9).sum(0).astype(np.float64))
            self._add("neg", (df < -1e-9).sum(0).astype(np.float64))
            self._add("within_r", float((np.hypot(df[:, 0], df[:, 1]) < r).sum()))
            ix = self._bin(df)
            flat = ix[:, 1] * HIST_BINS + ix[:, 0]
            nb = HIST_BINS * HIST_BINS
            self._add("h_n", np.bincount(flat, minlength=nb).astype(np.float64))
            self._add("h_x", np.bincount(flat, weights=df[:, 0], minlength=nb))
            self._add("h_y", np.bincount(flat, weights=df[:, 1], minlength=nb))
            u = np.mod(g[found] / self.stride, 1.0)
            self._add("su", u.sum(0))
            self._add("suu", (u * u).sum(0))
            self._add("sdu", (df * u).sum(0))
            mi = df.mean(0)
            self._add("images", 1.0)
            self._add("si", mi)
            self._add("ssi", np.outer(mi, mi))
        sw = g[:, ::-1]
        ok = (
            (np.hypot(*(sw - g).T) >= 2 * r)
            & (sw[:, 0] >= 0)
            & (sw[:, 0] < ww)
            & (sw[:, 1] >= 0)
            & (sw[:, 1] < hh)
        )
        if ok.any():
            fs, _ = nearest_peaks(p, sw[ok], r - 1e-9)
            fd, _ = nearest_peaks(p, g[ok], r - 1e-9)
            self._add("swap_n", float(ok.sum()))
            self._add("swap_hits", float(fs.sum()))
            self._add("swap_direct_hits", float(fd.sum()))

    def _bin(self, d: np.ndarray) -> np.ndarray:
        """Histogram bin (ix, iy) of displacements d [M, 2] (px), clipped to the edges."""
        w = 2 * self.reach / HIST_BINS
        return np.clip(np.floor((d + self.reach) / w), 0, HIST_BINS - 1).astype(np.int64)

    def mode(self) -> tuple[list[float], float] | None:
        """(mode (dx, dy) px, share of found displacements within r / 2 of it), or None."""
        hn = self._get("h_n", [HIST_BINS * HIST_BINS]).reshape(HIST_BINS, HIST_BINS)
        total = float(hn.sum())
        if total <= 0:
            return None
        from scipy.ndimage import convolve

        w = 2 * self.reach / HIST_BINS
        centres = -self.reach + w * (np.arange(HIST_BINS) + 0.5)
        rad = 0.5 * self.radius
        k = math.ceil(rad / w)
        yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
        disk = ((xx * w) ** 2 + (yy * w) ** 2 <= rad**2).astype(np.float64)
        dens = convolve(hn, disk, mode="constant")
        iy, ix = np.unravel_index(int(np.argmax(dens)), dens.shape)
        c = np.array([centres[ix], centres[iy]])
        hx = self._get("h_x", [HIST_BINS * HIST_BINS]).reshape(HIST_BINS, HIST_BINS)
        hy = self._get("h_y", [HIST_BINS * HIST_BINS]).reshape(HIST_BINS, HIST_BINS)
        cx, cy = np.meshgrid(centres, centres)
        share = 0.0
        for _ in range(MODE_STEPS):
            near = (cx - c[0]) ** 2 + (cy - c[1]) ** 2 <= rad**2
            n = float(hn[near].sum())
            if n <= 0:
                break
            c = np.array([float(hx[near].sum()) / n, float(hy[near].sum()) / n])
            share = n / total
        return [float(c[0]), float(c[1])], share

    def compute(self) -> dict[str, Any]:
        """Mean, std and tests of the displacement (px), side shares, the swap shares."""
        n_t, n = float(self._get("targets")), float(self._get("found"))
        out: dict[str, Any] = {
            "targets": int(n_t),
            "found": int(n),
            "found_share": safe_div(n, n_t),
            "reach_px": self.reach,
            "radius_px": self.radius,
            "stride": self.stride,
        }
        s, ss = self._get("sd", [2]), self._get("sdd", [2, 2])
        if n >= 1:
            m = s / n
            var = np.maximum(np.diag(ss) / n - m**2, 0.0) * (n / max(n - 1, 1))
            pos, neg = self._get("pos", [2]), self._get("neg", [2])
            side = [
                safe_div(float(pos[a] if m[a] >= 0 else neg[a]), float(pos[a] + neg[a]))
                for a in range(2)
            ]
            dom = int(np.argmax(np.abs(m)))
            mu = self._get("su", [2]) / n
            vu = self._get("suu", [2]) / n - mu**2
            cov_du = self._get("sdu", [2]) / n - m * mu
            slope = [
                float(cov_du[a] / vu[a] / self.stride) if vu[a] > 1e-6 else None for a in range(2)
            ]
            out.update(
                mean_px=[float(m[0]), float(m[1])],
                mean_norm_px=float(np.hypot(m[0], m[1])),
                std_px=[float(math.sqrt(var[0])), float(math.sqrt(var[1]))],
                side_share=side,
                dominant_axis="xy"[dom],
                dominant_side_share=side[dom],
                slope_share=slope,
                dominant_slope_share=slope[dom],
                within_radius_share=safe_div(float(self._get("within_r")), n),
                test_targets=hotelling(n, s, ss),
                test_images=hotelling(
                    float(self._get("images")), self._get("si", [2]), self._get("ssi", [2, 2])
                ),
            )
            md = self.mode()
            if md is not None:
                out["mode_px"], out["mode_share"] = md
                out["mode_norm_px"] = math.hypot(md[0][0], md[0][1])
        sn = float(self._get("swap_n"))
        out["swap"] = {
            "targets": int(sn),
            "swapped_hit_share": safe_div(float(self._get("swap_hits")), sn),
            "direct_hit_share": safe_div(float(self._get("swap_direct_hits")), sn),
        }
        return out


def label_agreement(pairs: LabelPairs, radius: float) -> dict[str, Any]:
    """Displacement from each label of ``pairs`` to the nearest reference point (px; the
    same statistics as between peaks and labels, at stride 1, so a shift reads as the
    vector to move the labels by), with the names of the two annotations."""
    a = DisplacementAnalysis(1, radius)
    for labels, ref, size in pairs.images.values():
        a.add_image(ref, labels, size)
    out = a.compute()
    out.update(
        labels=pairs.labels,
        reference=pairs.reference,
        file=pairs.file,
        trained=pairs.trained,
        images=len(pairs.images),
    )
    return out
