"""Score statistics: where the scores sit at targets and on the background.

Per level, pooled over the dataset:

- histograms of logits (fine bins, 0.02 wide on [-30, 30]) at target cells, in the soft
  neighbourhood and on the background (background and hotspot regions), shown on a log
  score axis;
- mean score over all cells against the label prior (the mean label): a calibrated model
  has mean score ~ mean label;
- the highest score in each target's 3x3 cell neighbourhood (what the peak decoder sees),
  and the share of targets whose peak reaches the threshold;
- ranking quality: AUC = P(score at a target cell > score at a background cell) (ties
  count half), from the fine histograms.

Together: no signal (AUC ~ 0.5, target scores ~ background) against a signal whose scores
never reach the threshold (AUC high, peaks below the threshold).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from convdiag.analyses.base import (
    N_LOGIT_BINS,
    REGION_BACKGROUND,
    REGION_HOTSPOT,
    REGION_NEAR,
    AnalysisStep,
    SumState,
    auc_from_hists,
    count_bins,
    hist_quantile,
    logit_bins,
    logit_edges,
    safe_div,
)

COARSE = 25  # fine bins per plotted bin (0.5 logit)


def _sigmoid(z: float | None) -> float | None:
    if z is None:
        return None
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


class ScoreAnalysis(SumState):
    """Score histograms at targets / neighbourhood / background, calibration and AUC."""

    name = "scores"

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = float(threshold)

    def update(self, step: AnalysisStep) -> None:
        """Add one batch (see the module docstring for what is accumulated)."""
        z, valid, region = step.logits, step.valid, step.region
        p = step.scores
        tgt = step.target
        bg = (region == REGION_BACKGROUND) | (region == REGION_HOTSPOT)
        near = region == REGION_NEAR
        idx = logit_bins(z)
        self._add("hist_target", count_bins(idx[tgt], N_LOGIT_BINS))
        self._add("hist_background", count_bins(idx[bg], N_LOGIT_BINS))
        self._add("hist_near", count_bins(idx[near], N_LOGIT_BINS))
        self._add("n_cells", float(valid.sum()))
        self._add("sum_score", float(p[valid].sum()))
        self._add("sum_label", float(step.labels.heatmap.double()[valid].sum()))
        self._add("n_target_cells", float(tgt.sum()))
        self._add("sum_score_target", float(p[tgt].sum()))
        self._add("n_background", float(bg.sum()))
        self._add("sum_score_background", float(p[bg].sum()))
        zb = z[bg]
        self._add("sum_logit_background", float(zb.sum()))
        self._add("sum_logit2_background", float((zb * zb).sum()))
        # Highest logit in each target's 3x3 neighbourhood (invalid cells never win).
        masked = torch.where(valid, z, torch.full_like(z, -math.inf))
        pooled = F.max_pool2d(masked, 3, stride=1, padding=1)
        peaks = []
        for b, pts in enumerate(step.points):
            if not len(pts):
                continue
            i = np.floor(pts[:, 1] / step.ctx.stride).astype(np.int64)
            j = np.floor(pts[:, 0] / step.ctx.stride).astype(np.int64)
            h, w = valid.shape[-2:]
            ok = (i >= 0) & (j >= 0) & (i < h) & (j < w)
            ii, jj = torch.from_numpy(i[ok]), torch.from_numpy(j[ok])
            ok_t = valid[b, 0, ii, jj]
            peaks.append(pooled[b, 0, ii, jj][ok_t])
        if peaks:
            pk = torch.cat(peaks)
            self._add("hist_peak", count_bins(logit_bins(pk), N_LOGIT_BINS))
            self._add("n_targets", float(pk.numel()))
            self._add("peaks_above", float((torch.sigmoid(pk) >= self.threshold).sum()))

    def compute(self) -> dict[str, Any]:
        """Scalars, quantiles (as scores) and coarse histograms (logit edges, counts)."""
        nb = N_LOGIT_BINS
        ht, hb = self._get("hist_target", [nb]), self._get("hist_background", [nb])
        hn, hp = self._get("hist_near", [nb]), self._get("hist_peak", [nb])
        edges = logit_edges()
        n_cells = float(self._get("n_cells"))
        nbg = float(self._get("n_background"))
        prior = safe_div(float(self._get("sum_label")), n_cells)
        mean_score = safe_div(float(self._get("sum_score")), n_cells)
        mean_z = safe_div(float(self._get("sum_logit_background")), nbg)
        std_z = None
        if mean_z is not None:
            var = float(self._get("sum_logit2_background")) / nbg - mean_z**2
            std_z = math.sqrt(max(var, 0.0))

        def q(h: np.ndarray, level: float) -> float | None:
            return _sigmoid(hist_quantile(h, edges, level))

        coarse = edges[::COARSE]
        return {
            "cells": int(n_cells),
            "target_cells": int(self._get("n_target_cells")),
            "targets": int(self._get("n_targets")),
            "label_prior": prior,
            "mean_score": mean_score,
            "score_prior_ratio": safe_div(mean_score, prior)
            if mean_score is not None and prior
            else None,
            "mean_score_target": safe_div(
                float(self._get("sum_score_target")), float(self._get("n_target_cells"))
            ),
            "mean_score_background": safe_div(float(self._get("sum_score_background")), nbg),
            "background_logit_mean": mean_z,
            "background_logit_std": std_z,
            "auc": auc_from_hists(ht, hb),
            "target_score": {"p10": q(ht, 0.1), "p50": q(ht, 0.5), "p90": q(ht, 0.9)},
            "background_score": {
                "p50": q(hb, 0.5),
                "p99": q(hb, 0.99),
                "p99.9": q(hb, 0.999),
                "max": q(hb, 1.0),
            },
            "peak_score": {"p10": q(hp, 0.1), "p50": q(hp, 0.5), "p90": q(hp, 0.9)},
            "peaks_above_threshold": safe_div(
                float(self._get("peaks_above")), float(self._get("n_targets"))
            ),
            "threshold": self.threshold,
            "hist": {
                "logit_edges": coarse.tolist(),
                "target": ht.reshape(-1, COARSE).sum(1).tolist(),
                "neighbourhood": hn.reshape(-1, COARSE).sum(1).tolist(),
                "background": hb.reshape(-1, COARSE).sum(1).tolist(),
                "peak": hp.reshape(-1, COARSE).sum(1).tolist(),
            },
        }
