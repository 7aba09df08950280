"""Offset head at target cells: does it follow the targets or collapse to a constant?

At each target cell (one per cell; DESIGN.md offsets in cell units, [0, 1)), predicted
offsets p against target offsets t, per axis (x, y), pooled over the dataset from sums:

    std_ratio = std(p) / std(t)          (~0: the head predicts a constant)
    R^2       = 1 - sum (p - t)^2 / sum (t - mean t)^2
    RMSE of the model, of the mean predictor (= std(t)) and of the cell-centre predictor
    (p = 0.5), in cells and pixels; localisation error |p - t| * stride (px, Euclidean),
    for the model and for the cell centre; 2-D histograms of (t, p) per axis.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from convdiag.analyses.base import AnalysisStep, SumState, hist_quantile, safe_div

H2D_BINS = 20
LOC_EDGES_CELLS = np.linspace(0.0, 1.5, 31)  # localisation error histogram, in cells


class OffsetAnalysis(SumState):
    """Offset collapse statistics at target cells."""

    name = "offsets"

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = int(stride)

    def update(self, step: AnalysisStep) -> None:
        """Add the target cells of one batch."""
        if step.reg is None:
            return
        self._add("reg_batches", 1.0)
        b, i, j = torch.nonzero(step.labels.offset_mask[:, 0] & step.valid[:, 0], as_tuple=True)
        if b.numel() == 0:
            return
        p = step.reg[b, :, i, j].double()  # [T, 2]
        t = step.labels.offset[b, :, i, j].double()
        self._add("n", float(b.numel()))
        self._add("st", t.sum(0))
        self._add("st2", (t * t).sum(0))
        self._add("sp", p.sum(0))
        self._add("sp2", (p * p).sum(0))
        self._add("stp", (t * p).sum(0))
        self._add("sse", ((p - t) ** 2).sum(0))
        self._add("sse_centre", ((0.5 - t) ** 2).sum(0))
        loc = torch.linalg.vector_norm(p - t, dim=1)
        loc_c = torch.linalg.vector_norm(0.5 - t, dim=1)
        self._add("loc_sum", float(loc.sum()))
        self._add("loc_centre_sum", float(loc_c.sum()))
        self._add("loc_hist", np.histogram(np.clip(loc.numpy(), 0, 1.5), LOC_EDGES_CELLS)[0])
        self._add(
            "loc_centre_hist", np.histogram(np.clip(loc_c.numpy(), 0, 1.5), LOC_EDGES_CELLS)[0]
        )
        edges = np.linspace(0.0, 1.0, H2D_BINS + 1)
        pn, tn = np.clip(p.numpy(), 0, 1 - 1e-9), np.clip(t.numpy(), 0, 1 - 1e-9)
        for a, name in enumerate(("x", "y")):
            h2, _, _ = np.histogram2d(tn[:, a], pn[:, a], bins=[edges, edges])
            self._add(f"h2d_{name}", h2)

    def compute(self) -> dict[str, Any]:
        """Per-axis statistics, their means over the axes and the localisation errors."""
        n = float(self._get("n"))
        available = float(self._get("reg_batches")) > 0
        if not available or n == 0:
            return {"available": available, "target_cells": int(n)}
        z2 = np.zeros(2)
        mt, mp = self._get("st", [2]) / n, self._get("sp", [2]) / n
        vt = np.maximum(self._get("st2", [2]) / n - mt**2, 0.0)
        vp = np.maximum(self._get("sp2", [2]) / n - mp**2, 0.0)
        cov = self._get("stp", [2]) / n - mt * mp
        sse, sse_c = self._get("sse", [2]), self._get("sse_centre", z2.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            std_ratio = np.where(vt > 0, np.sqrt(vp / vt), np.nan)
            r2 = np.where(vt > 0, 1.0 - sse / (n * vt), np.nan)
            corr = np.where(vt * vp > 0, cov / np.sqrt(vt * vp), np.nan)
        s = self.stride
        edges_px = LOC_EDGES_CELLS * s
        lh, lch = self._get("loc_hist", [30]), self._get("loc_centre_hist", [30])

        def axes(v: np.ndarray) -> dict[str, float | None]:
            return {
                k: (None if not np.isfinite(x) else float(x)) for k, x in zip("xy", v, strict=True)
            }

        def mean2(v: np.ndarray) -> float | None:
            f = v[np.isfinite(v)]
            return float(f.mean()) if len(f) else None

        return {
            "available": True,
            "target_cells": int(n),
            "stride": s,
            "offset_std_ratio": mean2(std_ratio),
            "offset_r2": mean2(r2),
            "std_ratio": axes(std_ratio),
            "r2": axes(r2),
            "corr": axes(corr),
            "target_mean": axes(mt),
            "target_std": axes(np.sqrt(vt)),
            "pred_mean": axes(mp),
            "pred_std": axes(np.sqrt(vp)),
            "rmse_cells": {
                "model": axes(np.sqrt(sse / n)),
                "mean_predictor": axes(np.sqrt(vt)),
                "centre_predictor": axes(np.sqrt(sse_c / n)),
            },
            "loc_error_px": {
                "model_mean": safe_div(float(self._get("loc_sum")) * s, n),
                "model_p50": hist_quantile(lh, edges_px, 0.5),
                "model_p90": hist_quantile(lh, edges_px, 0.9),
                "centre_mean": safe_div(float(self._get("loc_centre_sum")) * s, n),
                "centre_p90": hist_quantile(lch, edges_px, 0.9),
                "mean_predictor_rms": float(math.sqrt(float(vt.sum()))) * s,
            },
            "loc_hist": {
                "edges_px": edges_px.tolist(),
                "model": lh.tolist(),
                "centre": lch.tolist(),
            },
            "h2d": {
                "edges": np.linspace(0.0, 1.0, H2D_BINS + 1).tolist(),
                "x": self._get("h2d_x", [H2D_BINS, H2D_BINS]).tolist(),
                "y": self._get("h2d_y", [H2D_BINS, H2D_BINS]).tolist(),
            },
        }
