"""Where the learning signal goes: per-cell |dL/dlogit| of the classification loss.

For each cell, g = |d(sum of per-cell losses)/d logit| (autograd on the logits; BCE gives
|w y (p - 1) + (1 - y) p|, i.e. |p - y| without pos_weight). Accumulated per level:

- one mean map (grid-aligned, averaged over the images that cover each cell), and a
  target-centred mean patch (cells around each target cell, 9 x 9);
- the gradient mass share of each region (targets, soft neighbourhood, background,
  false-positive hotspots; see ``analyses.base``);
- the fraction of cells that carry 90% of the mass (from a log-binned histogram of g);
- an example image (``ctx.example_index``, else the first holding a target) with its maps.

The same is computed from the same logits under each counterfactual loss of the context
(the recipe with soft labels, focal loss or pos_weight applied): what a remedy would change
in the learning signal, before any retraining.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from convdiag.analyses.base import (
    N_LOG_G_BINS,
    REGION_NAMES,
    AnalysisContext,
    AnalysisStep,
    Candidate,
    SumState,
    count_bins,
    grad_bins,
    mass_fraction_cells,
    safe_div,
)
from convdiag.targets.labels import LabelBatch, render_batch
from convdiag.targets.supervision import cls_loss_sum, label_params

PATCH_RADIUS = 4  # the target-centred patch is (2R+1) x (2R+1) cells


def candidate_labels(cand: Candidate, step: AnalysisStep) -> LabelBatch:
    """The labels of a candidate for a step: the step's own when the label settings agree."""
    kernel, sigma = label_params(cand.recipe, 1.0)
    k0, s0 = label_params(step.ctx.recipe, 1.0)
    if (kernel, sigma, cand.recipe.trunc) == (k0, s0, step.ctx.recipe.trunc):
        return step.labels
    grid = (int(step.logits.shape[-2]), int(step.logits.shape[-1]))
    return render_batch(
        step.points, step.sizes, grid, step.ctx.level, kernel, sigma, cand.recipe.trunc
    )


def cell_gradient(recipe: Any, logits: Tensor, labels: LabelBatch) -> Tensor:
    """|d(sum of the recipe's per-cell cls losses)/d logit| [B, 1, h, w] float64 by autograd."""
    with torch.enable_grad():
        z = logits.detach().double().requires_grad_(True)
        loss = cls_loss_sum(recipe, z, labels)
        (g,) = torch.autograd.grad(loss, z)
    return g.abs()


class GradientAnalysis(SumState):
    """Gradient maps and their concentration, for the recipe and each counterfactual."""

    name = "gradients"

    def __init__(self, ctx: AnalysisContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.candidates = ctx.candidates or [Candidate("current", ctx.recipe)]
        self._example: dict[str, Any] | None = None

    def _grads(self, step: AnalysisStep) -> list[tuple[str, Tensor]]:
        out = []
        for c in self.candidates:
            if c.name == "current":
                out.append((c.name, step.cell_grad))
            else:
                out.append(
                    (c.name, cell_gradient(c.recipe, step.logits, candidate_labels(c, step)))
                )
        return out

    def update(self, step: AnalysisStep) -> None:
        """Add one batch for every candidate."""
        valid, region = step.valid, step.region
        hm, wm = self.ctx.max_grid
        reg_idx = region[valid].long()
        self._add("cells", count_bins(reg_idx, len(REGION_NAMES)))
        cover = valid[:, 0].double().sum(0)[:hm, :wm]
        self._add_map("map_count", cover)
        tb, ti, tj = torch.nonzero(step.target[:, 0], as_tuple=True)
        d = torch.arange(-PATCH_RADIUS, PATCH_RADIUS + 1)
        ii = ti[:, None, None] + d[None, :, None]
        jj = tj[:, None, None] + d[None, None, :]
        h, w = valid.shape[-2:]
        inside = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
        bb = tb[:, None, None].expand_as(ii)
        iic, jjc = ii.clamp(0, h - 1), jj.clamp(0, w - 1)
        inside = inside & valid[bb, 0, iic, jjc]
        self._add("patch_count", inside.double().sum(0))
        grads = self._grads(step)
        for name, g in grads:
            gv = g[valid]
            self._add(f"{name}.mass", count_bins(reg_idx, len(REGION_NAMES), gv))
            pos = gv > 0
            idx = grad_bins(gv[pos])
            self._add(f"{name}.hist_count", count_bins(idx, N_LOG_G_BINS))
            self._add(f"{name}.hist_mass", count_bins(idx, N_LOG_G_BINS, gv[pos]))
            self._add(f"{name}.zeros", float((~pos).sum()))
            self._add_map(f"{name}.map_sum", (g * valid)[:, 0].sum(0)[:hm, :wm])
            patch = torch.where(inside, g[bb, 0, iic, jjc], torch.zeros((), dtype=g.dtype))
            self._add(f"{name}.patch_sum", patch.sum(0))
        self._keep_example(step, grads)

    def _add_map(self, key: str, m: Tensor) -> None:
        hm, wm = self.ctx.max_grid
        full = np.zeros((hm, wm))
        a = m.detach().cpu().numpy()
        full[: a.shape[0], : a.shape[1]] = a
        self._add(key, full)

    def _keep_example(self, step: AnalysisStep, grads: list[tuple[str, Tensor]]) -> None:
        want = self.ctx.example_index
        for b, idx in enumerate(step.indices):
            if want is not None and idx != want:
                continue
            if want is None and not len(step.points[b]):
                continue
            if self._example is not None and self._example["index"] <= idx:
                return
            hh, ww = step.sizes[b]
            s = self.ctx.stride
            gh, gw = math.ceil(hh / s), math.ceil(ww / s)
            pts, sc = step.preds[b]
            keep = sc >= self.ctx.threshold
            self._example = {
                "index": idx,
                "image": step.images[b, 0, :hh, :ww].detach().cpu().numpy().copy(),
                "points": np.asarray(step.points[b], dtype=np.float64).copy(),
                "preds": pts[keep].copy(),
                "scores": step.scores[b, 0, :gh, :gw].cpu().numpy().copy(),
                "grads": {n: g[b, 0, :gh, :gw].cpu().numpy().copy() for n, g in grads},
            }
            return

    def merge_example(self, other: GradientAnalysis) -> None:
        """Keep whichever example comes first in dataset order."""
        if other._example is not None and (
            self._example is None or other._example["index"] < self._example["index"]
        ):
            self._example = other._example

    def compute(self) -> dict[str, Any]:
        """Per candidate: region shares, 90%-mass cell fraction, mean |g| by region."""
        nr = len(REGION_NAMES)
        cells = self._get("cells", [nr])
        out: dict[str, Any] = {"regions": list(REGION_NAMES), "cells": cells.tolist()}
        cands: dict[str, Any] = {}
        for c in self.candidates:
            mass = self._get(f"{c.name}.mass", [nr])
            total = float(mass.sum())
            shares = [safe_div(float(m), total) for m in mass]
            frac90 = mass_fraction_cells(
                self._get(f"{c.name}.hist_count", [N_LOG_G_BINS]),
                self._get(f"{c.name}.hist_mass", [N_LOG_G_BINS]),
                float(self._get(f"{c.name}.zeros")),
            )
            t, nb = REGION_NAMES.index("target"), REGION_NAMES.index("neighbourhood")
            cands[c.name] = {
                "remedy": c.remedy,
                "params": c.params,
                "shares": dict(zip(REGION_NAMES, shares, strict=True)),
                "pos_grad_share": shares[t],
                "target_area_grad_share": None if total == 0 else (mass[t] + mass[nb]) / total,
                "cells_for_90pct": frac90,
                "mean_grad": {
                    n: safe_div(float(mass[k]), float(cells[k])) for k, n in enumerate(REGION_NAMES)
                },
                "total_grad": total,
            }
        out["candidates"] = cands
        return out

    def arrays(self) -> dict[str, Any]:
        """Mean maps and target-centred patches per candidate, and the example image."""
        cnt = self._get("map_count", self.ctx.max_grid)
        pcnt = self._get("patch_count", [2 * PATCH_RADIUS + 1] * 2)
        out: dict[str, Any] = {"example": self._example}
        with np.errstate(invalid="ignore", divide="ignore"):
            for c in self.candidates:
                out[f"{c.name}.map"] = self._get(f"{c.name}.map_sum", self.ctx.max_grid) / cnt
                out[f"{c.name}.patch"] = (
                    self._get(f"{c.name}.patch_sum", [2 * PATCH_RADIUS + 1] * 2) / pcnt
                )
        return out
