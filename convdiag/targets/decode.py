"""Peak decoding, one-to-one matching and detection metrics (DESIGN.md "Matching and metrics").

Decode: p = sigmoid(logit); a cell is a peak when it is the maximum of its 3x3 neighbourhood
(within the image's own grid ceil(H/s) x ceil(W/s); padding cells neither count nor suppress);
the top 100 peaks with p >= threshold are kept. A peak at cell (i, j) with offset (dx, dy) is
the point ((j + dx) s, (i + dy) s); without an offset head, the cell centre.

Match: predictions and targets are paired one-to-one among pairs closer than r pixels, with
as many pairs as possible and, among those, the least total distance.

Metrics at each threshold t (predictions with score >= t), pooled over all images:
precision = TP / (TP + FP), recall (target-level Pd) = TP / (TP + FN), F1 = 2PR / (P + R),
FP per image, FP per megapixel, mean distance of matched pairs (px). Conventions for empty
cases: no prediction -> precision 0 when there are targets, 1 when there are none; no target
-> recall 1; F1 0 when P + R = 0; localisation error NaN when nothing matched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from convdiag.errors import InputError

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)
SCORE_BINS = np.linspace(0.0, 1.0, 51)
MAX_FP_COUNT = 100  # the FP-per-image histogram has bins 0..100, the last one "100 or more"
# Edges, in units of the match radius r, of the histogram of FP distances to the nearest
# target: [0, r) duplicates, [r, 2r) near misses, >= 2r background; inf = image has no target.
FP_DIST_EDGES_R = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0, np.inf])

Detections = list[tuple[np.ndarray, np.ndarray]]


def decode(
    cls_logits: Tensor,
    reg: Tensor | None,
    stride: int,
    image_sizes: Sequence[tuple[int, int]],
    threshold: float = 0.0,
    topk: int = 100,
) -> Detections:
    """Peaks of a batch of heatmaps as points.

    cls_logits [B, 1, h, w] logits; reg [B, 2, h, w] offsets (dx, dy) in cell units or None;
    image_sizes: B original (H, W). Returns per image (points [K, 2] float64 (x, y), scores
    [K] float64), sorted by score descending (ties: row-major cell order), K <= topk.
    NaN scores are never peaks.
    """
    if cls_logits.ndim != 4 or cls_logits.shape[1] != 1:
        raise InputError(f"classification output {tuple(cls_logits.shape)}: expected [B, 1, h, w]")
    b, _, h, w = cls_logits.shape
    if len(image_sizes) != b:
        raise InputError(f"decode: {len(image_sizes)} image sizes for a batch of {b}")
    if reg is not None and (reg.shape[0] != b or reg.shape[1] != 2 or reg.shape[2:] != (h, w)):
        raise InputError(f"offset output {tuple(reg.shape)}: expected [{b}, 2, {h}, {w}]")
    with torch.no_grad():
        scores = torch.sigmoid(cls_logits.detach().float())
        inside = torch.zeros_like(scores, dtype=torch.bool)
        for n, (hh, ww) in enumerate(image_sizes):
            inside[n, :, : math.ceil(hh / stride), : math.ceil(ww / stride)] = True
        scores = torch.where(inside, scores, torch.full_like(scores, -1.0))
        pooled = F.max_pool2d(scores, 3, stride=1, padding=1)
        peak = (scores == pooled) & inside & (scores >= threshold)
        score_np = scores.cpu().numpy().astype(np.float64)
        peak_np = peak.cpu().numpy()
        reg_np = None if reg is None else reg.detach().float().cpu().numpy().astype(np.float64)
    out: Detections = []
    for n in range(b):
        idx = np.flatnonzero(peak_np[n, 0])
        s = score_np[n, 0].reshape(-1)[idx]
        order = np.argsort(-s, kind="stable")[:topk]
        idx, s = idx[order], s[order]
        i, j = np.divmod(idx, w)
        if reg_np is None:
            dx = dy = np.full(len(idx), 0.5)
        else:
            dx, dy = reg_np[n, 0, i, j], reg_np[n, 1, i, j]
        pts = np.stack([(j + dx) * stride, (i + dy) * stride], axis=1).reshape(-1, 2)
        out.append((pts, s))
    return out


def _distances(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distances [K, N] between points pred [K, 2] and gt [N, 2]."""
    p = np.asarray(pred, np.float64).reshape(-1, 2)
    g = np.asarray(gt, np.float64).reshape(-1, 2)
    return np.hypot(p[:, None, 0] - g[None, :, 0], p[:, None, 1] - g[None, :, 1])


def match_distances(dist: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-cardinality, minimum-total-distance matching on a distance matrix [K, N].

    Pairs with dist < radius are allowed (non-finite distances never are). Forbidden pairs cost
    BIG = (min(K, N) + 1) * radius + 1, more than any set of allowed pairs together, so the
    assignment first maximises the number of allowed pairs, then minimises their total.
    Returns (pred_idx, gt_idx, distances) of the matched pairs, sorted by pred_idx.
    """
    allowed = np.isfinite(dist) & (dist < radius)
    rows = np.flatnonzero(allowed.any(axis=1))
    if len(rows) == 0:
        e = np.zeros(0, np.int64)
        return e, e.copy(), np.zeros(0)
    cols = np.flatnonzero(allowed.any(axis=0))
    sub_ok = allowed[np.ix_(rows, cols)]
    sub = dist[np.ix_(rows, cols)]
    if len(rows) == 1 or len(cols) == 1:  # one candidate: the nearest allowed partner
        flat = np.where(sub_ok, sub, np.inf)
        r, c = np.unravel_index(int(np.argmin(flat)), flat.shape)
        pi, gi = rows[[r]], cols[[c]]
        return pi.astype(np.int64), gi.astype(np.int64), dist[pi, gi]
    big = (min(sub.shape) + 1) * radius + 1.0
    r, c = linear_sum_assignment(np.where(sub_ok, sub, big))
    keep = sub_ok[r, c]
    pi, gi = rows[r[keep]], cols[c[keep]]
    order = np.argsort(pi, kind="stable")
    pi, gi = pi[order].astype(np.int64), gi[order].astype(np.int64)
    return pi, gi, dist[pi, gi]


def match(
    pred: np.ndarray, gt: np.ndarray, radius: float = 3.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match predicted points [K, 2] to target points [N, 2] one-to-one (pairs closer than radius).

    As many matches as possible; of those, the least total distance. Returns (pred_idx [M],
    gt_idx [M], distances [M]) of the matched pairs, sorted by pred_idx.
    """
    return match_distances(_distances(pred, gt), radius)


class DetectionMetrics:
    """Streaming detection metrics over thresholds (torchmetrics style).

    ``update`` per batch, ``compute`` at the end; ``state``/``load_state``/``merge`` for several
    processes. Every image is accumulated on its own, so batch size never changes the result.
    The threshold 0.5 is always included (the summary figures are taken there).
    """

    def __init__(self, thresholds: Sequence[float] | np.ndarray = THRESHOLDS, radius: float = 3.0):
        t = np.unique(np.round(np.append(np.asarray(thresholds, np.float64), 0.5), 6))
        self.thresholds = t
        self.radius = float(radius)
        self._i05 = int(np.flatnonzero(t == 0.5)[0])
        self.fp_dist_edges = FP_DIST_EDGES_R * self.radius
        self.reset()

    def reset(self) -> None:
        """Clear every accumulator."""
        nt = len(self.thresholds)
        self._state: dict[str, np.ndarray] = {
            "tp": np.zeros(nt, np.int64),
            "fp": np.zeros(nt, np.int64),
            "fn": np.zeros(nt, np.int64),
            "dist_sum": np.zeros(nt, np.float64),
            "images": np.zeros(1, np.int64),
            "pixels": np.zeros(1, np.int64),
            "targets": np.zeros(1, np.int64),
            "tp_score_hist": np.zeros(len(SCORE_BINS) - 1, np.int64),
            "fp_score_hist": np.zeros(len(SCORE_BINS) - 1, np.int64),
            "fp_count_hist": np.zeros(MAX_FP_COUNT + 1, np.int64),
            "fp_dist_hist": np.zeros(len(FP_DIST_EDGES_R) - 1, np.int64),
        }

    def update(
        self,
        preds: Detections,
        gts: Sequence[np.ndarray],
        image_sizes: Sequence[tuple[int, int]],
    ) -> None:
        """Add a batch: preds from ``decode`` (points [K, 2], scores [K]) per image, target
        points gts [N, 2] per image, image sizes (H, W).

        Per threshold t: the predictions with score >= t are matched to the targets; TP, FP,
        FN and the matched distances are added. Score histograms (50 bins on [0, 1]) of TP and
        FP come from matching all predictions given; the FP-count and FP-distance histograms
        from the matching at 0.5.
        """
        if not len(preds) == len(gts) == len(image_sizes):
            raise InputError(
                f"metrics: {len(preds)} predictions, {len(gts)} targets and "
                f"{len(image_sizes)} image sizes differ"
            )
        st = self._state
        for (points, scores), gt, (hh, ww) in zip(preds, gts, image_sizes, strict=True):
            s = np.asarray(scores, np.float64).reshape(-1)
            order = np.argsort(-s, kind="stable")
            order = order[~np.isnan(s[order])]  # a NaN score is no prediction
            s = s[order]
            p = np.asarray(points, np.float64).reshape(-1, 2)[order]
            g = np.asarray(gt, np.float64).reshape(-1, 2)
            dist = _distances(p, g)
            st["images"] += 1
            st["pixels"] += int(hh) * int(ww)
            st["targets"] += len(g)
            # Scores are sorted descending: the predictions kept at t are a prefix. Only the
            # predictions with a target within r can match, so the matching at t depends
            # only on how many of those are in the prefix: one assignment per distinct count.
            counts = np.searchsorted(-s, -self.thresholds, side="right")
            cand = np.flatnonzero((np.isfinite(dist) & (dist < self.radius)).any(axis=1))
            cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for ti, k in enumerate(counts):
                k = int(k)
                kc = int(np.searchsorted(cand, k))
                if kc not in cache:
                    pi, _, d = match_distances(dist[cand[:kc]], self.radius)
                    cache[kc] = (cand[pi], d)
                pi, d = cache[kc]
                st["tp"][ti] += len(pi)
                st["fp"][ti] += k - len(pi)
                st["fn"][ti] += len(g) - len(pi)
                st["dist_sum"][ti] += float(d.sum())
            pi_all = (
                cache[len(cand)][0]
                if len(cand) in cache
                else cand[match_distances(dist[cand], self.radius)[0]]
            )
            is_tp = np.zeros(len(s), bool)
            is_tp[pi_all] = True
            st["tp_score_hist"] += np.histogram(np.clip(s[is_tp], 0, 1), SCORE_BINS)[0]
            st["fp_score_hist"] += np.histogram(np.clip(s[~is_tp], 0, 1), SCORE_BINS)[0]
            k05 = int(counts[self._i05])
            pi05 = cache[int(np.searchsorted(cand, k05))][0]
            fp05 = np.ones(k05, bool)
            fp05[pi05] = False
            st["fp_count_hist"][min(int(fp05.sum()), MAX_FP_COUNT)] += 1
            d05 = np.where(np.isnan(dist[:k05][fp05]), np.inf, dist[:k05][fp05])
            nearest = d05.min(axis=1) if len(g) else np.full(int(fp05.sum()), np.inf)
            st["fp_dist_hist"] += np.histogram(nearest, self.fp_dist_edges)[0]

    def state(self) -> dict[str, np.ndarray]:
        """Accumulators as plain arrays (sum them across processes, then ``load_state``)."""
        return {k: v.copy() for k, v in self._state.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace the accumulators by ``state`` (as returned by ``state``, possibly summed)."""
        for k, v in self._state.items():
            a = np.asarray(state[k]).reshape(v.shape).astype(v.dtype)
            self._state[k] = a.copy()

    def merge(self, other: DetectionMetrics) -> None:
        """Add another instance's accumulators (same thresholds and radius) to this one."""
        if not np.array_equal(other.thresholds, self.thresholds) or other.radius != self.radius:
            raise ValueError("cannot merge metrics with different thresholds or radius")
        for k in self._state:
            self._state[k] = self._state[k] + other._state[k]

    def compute(self) -> dict[str, Any]:
        """Summaries at 0.5, curves over thresholds, histograms (plain Python data; JSON-ready).

        Scalars at threshold 0.5: precision, recall, f1, fp_per_image, fp_per_mpix,
        loc_error_px, tp, fp, fn (and the aliases f1_at_0.5, precision_at_0.5,
        recall_at_0.5); best_f1, best_threshold (the lowest threshold reaching best_f1),
        images, targets, pixels; thresholds (list). Under "curves": the same nine figures as
        lists over "thresholds".
        Histograms under "histograms": score_bins, tp_scores, fp_scores (all predictions
        given), fp_per_image_counts (index = FP count at 0.5, last bin = 100 or more),
        fp_distance_edges_px / fp_distance (FPs at 0.5 by distance to the nearest target;
        inf = no target in the image), fp_duplicate (< r), fp_near_miss ([r, 2r)),
        fp_background (>= 2r or no target).
        """
        st = self._state
        tp, fp, fn = (st[k].astype(np.float64) for k in ("tp", "fp", "fn"))
        n_img, pixels, targets = int(st["images"][0]), int(st["pixels"][0]), int(st["targets"][0])
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0 if targets else 1.0)
            recall = np.where(tp + fn > 0, tp / (tp + fn), 1.0)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
            loc = np.where(tp > 0, st["dist_sum"] / tp, np.nan)
        fp_img = fp / n_img if n_img else np.zeros_like(fp)
        fp_mpix = fp / (pixels / 1e6) if pixels else np.zeros_like(fp)
        curves = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "fp_per_image": fp_img,
            "fp_per_mpix": fp_mpix,
            "loc_error_px": loc,
            "tp": st["tp"],
            "fp": st["fp"],
            "fn": st["fn"],
        }
        out: dict[str, Any] = {"thresholds": [float(t) for t in self.thresholds]}
        for name, arr in curves.items():
            out[name] = arr[self._i05].item()
        for name in ("precision", "recall", "f1"):
            out[f"{name}_at_0.5"] = out[name]
        out["curves"] = {"thresholds": out["thresholds"]}
        out["curves"].update({name: [v.item() for v in arr] for name, arr in curves.items()})
        best = int(np.argmax(f1))
        out["best_f1"] = float(f1[best])
        out["best_threshold"] = float(self.thresholds[best])
        out["images"], out["targets"], out["pixels"] = n_img, targets, pixels
        r, d = self.radius, st["fp_dist_hist"]
        e = self.fp_dist_edges
        out["histograms"] = {
            "score_bins": SCORE_BINS.tolist(),
            "tp_scores": st["tp_score_hist"].tolist(),
            "fp_scores": st["fp_score_hist"].tolist(),
            "fp_per_image_counts": st["fp_count_hist"].tolist(),
            "fp_distance_edges_px": e.tolist(),
            "fp_distance": d.tolist(),
            "fp_duplicate": int(d[e[:-1] < r].sum()),
            "fp_near_miss": int(d[(e[:-1] >= r) & (e[:-1] < 2 * r)].sum()),
            "fp_background": int(d[e[:-1] >= 2 * r].sum()),
        }
        return out

    def summary(self) -> dict[str, float | int]:
        """Scalars at threshold 0.5 under plain names: precision, recall, f1, fp_per_image,
        fp_per_mpix, loc_error_px, plus best_f1, best_threshold, images, targets."""
        c = self.compute()
        keys = ("precision", "recall", "f1", "fp_per_image", "fp_per_mpix", "loc_error_px")
        return {k: c[k] for k in (*keys, "best_f1", "best_threshold", "images", "targets")}
