"""Detections: peaks matched to targets (DESIGN.md "Matching and metrics"), over thresholds.

Wraps ``decode.DetectionMetrics`` with thresholds that reach below 0.05 (down to 0.001),
so a model whose target peaks sit at 0.02 still shows the ranking it has: ``best_f1`` is
over the standard thresholds 0.05-0.95 (as ``train`` and ``retrain`` report it),
``best_f1_low`` over every threshold. Curves give precision, recall (Pd), F1 and FP per
image against the threshold; histograms give FP per image, FP and TP scores, and FP
distance to the nearest target (near misses within 2r against background clutter).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convdiag.analyses.base import AnalysisStep
from convdiag.targets.decode import THRESHOLDS, DetectionMetrics

LOW_THRESHOLDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03)


def analysis_thresholds(threshold: float) -> np.ndarray:
    """The standard thresholds, the low ones and the reporting threshold, sorted."""
    t = {float(x) for x in THRESHOLDS} | set(LOW_THRESHOLDS) | {round(float(threshold), 6)}
    return np.array(sorted(t))


class DetectionAnalysis:
    """Detection metrics and curves at one level."""

    name = "detections"

    def __init__(self, radius: float = 3.0, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)
        self.metrics = DetectionMetrics(thresholds=analysis_thresholds(threshold), radius=radius)

    def update(self, step: AnalysisStep) -> None:
        """Match the decoded peaks of one batch."""
        self.metrics.update(step.preds, step.points, step.sizes)

    def state(self) -> dict[str, np.ndarray]:
        """DetectionMetrics accumulators."""
        return self.metrics.state()

    def merge(self, state: dict[str, np.ndarray]) -> None:
        """Add another instance's accumulators."""
        mine = self.metrics.state()
        self.metrics.load_state({k: mine[k] + np.asarray(state[k]) for k in mine})

    def arrays(self) -> dict[str, Any]:
        """No plot-only arrays."""
        return {}

    def compute(self) -> dict[str, Any]:
        """Curves over thresholds, scalars at 0.5 (``<curve>_at_0.5``) and at the reporting
        threshold (``<curve>_at_threshold``), best_f1 / best_threshold over the standard
        thresholds, best_f1_low / best_threshold_low over all, and the histograms."""
        res = self.metrics.compute()
        curves = res.get("curves")
        src: dict[str, Any] = curves if isinstance(curves, dict) else res
        t = np.asarray(res["thresholds"], dtype=np.float64)
        out: dict[str, Any] = {"thresholds": t.tolist()}
        for name in CURVES:
            if name in src:
                out[name] = [float(v) for v in src[name]]
        f1 = np.asarray(out["f1"], dtype=np.float64)
        std = np.isin(np.round(t, 6), np.round(THRESHOLDS, 6))
        k_std = int(np.flatnonzero(std)[np.argmax(f1[std])])
        k_all = int(np.argmax(f1))
        out["best_f1"] = float(f1[k_std])
        out["best_threshold"] = float(t[k_std])
        out["best_f1_low"] = float(f1[k_all])
        out["best_threshold_low"] = float(t[k_all])
        k05 = int(np.argmin(np.abs(t - 0.5)))
        k = int(np.argmin(np.abs(t - self.threshold)))
        for name in CURVES:
            if name in out:
                out[f"{name}_at_0.5"] = _finite(out[name][k05])
                out[f"{name}_at_threshold"] = _finite(out[name][k])
        for key in ("images", "targets", "pixels", "histograms"):
            out[key] = res.get(key)
        out["threshold"] = self.threshold
        out["radius"] = self.metrics.radius
        return out


CURVES = (
    "precision",
    "recall",
    "f1",
    "fp_per_image",
    "fp_per_mpix",
    "loc_error_px",
    "tp",
    "fp",
    "fn",
)


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None
