"""Per-head parameter-gradient norms: classification head against offset head.

The gradient of the training loss L = cls_sum / N_cls + reg_weight * reg_sum / N_reg with
respect to the classification head's parameters comes from the cls term only and that of
the offset head from the reg term only, so each is accumulated as the gradient of the
summed loss over batches and divided once by its pooled normaliser (N_cls: valid cells for
BCE, target cells for the focal kinds; N_reg: 2 x target cells). Norms are L2 over all
parameters of the head. ``ratio`` = |grad cls| / |grad reg|.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convdiag.analyses.base import AnalysisStep, SumState, safe_div
from convdiag.load.recipe import Recipe


class HeadGradientAnalysis(SumState):
    """Gradient norms of the cls and reg heads' parameters under the training loss."""

    name = "heads"

    def __init__(self, recipe: Recipe, params: dict[str, int] | None = None) -> None:
        super().__init__()
        self.recipe = recipe
        self.params = params or {}

    def update(self, step: AnalysisStep) -> None:
        """Add one batch's summed-loss gradients and normaliser counts."""
        if step.param_grads is None:
            return
        valid, pos = step.valid, step.target
        norm = valid.sum() if self.recipe.loss == "bce" else pos.sum()
        self._add("n_cls", float(norm))
        self._add("n_reg", 2.0 * float((step.labels.offset_mask & valid).sum()))
        for kind in ("cls", "reg"):
            g = step.param_grads.get(kind)
            if g is not None:
                self._add(f"grad_{kind}", g.double().cpu().numpy())

    def compute(self) -> dict[str, Any]:
        """Norms of each head's gradient and their ratio (None where a head is unknown)."""
        out: dict[str, Any] = {"parameters": dict(self.params)}
        norms: dict[str, float | None] = {}
        for kind, n_key, weight in (
            ("cls", "n_cls", 1.0),
            ("reg", "n_reg", self.recipe.reg_weight),
        ):
            g = self._s.get(f"grad_{kind}")
            n = float(self._get(n_key))
            if g is None or g.size == 0 or n == 0:
                norms[kind] = None
                continue
            norms[kind] = float(weight * np.linalg.norm(g) / n)
        out["cls_grad_norm"] = norms["cls"]
        out["reg_grad_norm"] = norms["reg"]
        ratio = None
        if norms["cls"] is not None and norms["reg"]:
            ratio = safe_div(norms["cls"], norms["reg"])
        out["cls_reg_ratio"] = ratio
        out["log10_ratio"] = None if not ratio else math.log10(ratio)
        return out
