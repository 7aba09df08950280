"""Classification loss split into its positive and negative parts, against a constant predictor.

With the recipe's plain loss (BCE with its pos_weight, CenterNet focal or sigmoid focal;
OHEM selection and the loss ramp are not modelled: both depend on the batch or the step):

    cls_loss      = sum over cells of per-cell loss / N     (N: valid cells for BCE,
                                                             target cells for the focal kinds)
    cls_loss_pos  = sum over cells with label == 1 / N      cls_loss_neg = the rest / N
    constant_loss = the loss of the best constant predictor on the same labels
    loss_ratio    = cls_loss / constant_loss                (~1: the model predicts no better
                                                             than "background everywhere")

and the offset L1 at target cells, against the cell-centre (0.5) predictor.
"""

from __future__ import annotations

from typing import Any

import torch

from convdiag.analyses.base import AnalysisStep, SumState, safe_div
from convdiag.analyses.label_stats import constant_loss
from convdiag.load.recipe import Recipe
from convdiag.targets.supervision import cls_loss_sum


class LossAnalysis(SumState):
    """Pooled classification loss (positive / negative parts), constant-predictor loss."""

    name = "loss"

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe

    def update(self, step: AnalysisStep) -> None:
        """Add one batch: per-cell losses summed by part, label sums for the constant loss."""
        lab = step.labels
        y = lab.heatmap.double()
        valid = step.valid
        pos = step.target
        neg = valid & ~pos
        z = step.logits
        self._add("cls_pos", float(cls_loss_sum(self.recipe, z, _masked(lab, pos))))
        self._add("cls_neg", float(cls_loss_sum(self.recipe, z, _masked(lab, neg))))
        self._add("n_cells", float(valid.sum()))
        self._add("n_pos", float(pos.sum()))
        self._add("sum_y", float(y[valid].sum()))
        self._add("sum_neg_weight", float(((1 - y[neg]) ** self.recipe.focal_beta).sum()))
        if step.reg is not None:
            m = lab.offset_mask.expand_as(step.reg)
            t = lab.offset.double()
            self._add("reg_sum", float(((step.reg - t).abs() * m).sum()))
            self._add("reg_centre_sum", float(((0.5 - t).abs() * m).sum()))
            self._add("reg_count", float(m.sum()))

    def compute(self) -> dict[str, Any]:
        """cls_loss, its parts and their shares, constant_loss, loss_ratio, reg losses."""
        r = self.recipe
        n_cells, n_pos = float(self._get("n_cells")), float(self._get("n_pos"))
        norm = n_cells if r.loss == "bce" else n_pos
        norm = max(norm, 1.0)
        pos, neg = float(self._get("cls_pos")), float(self._get("cls_neg"))
        cls = (pos + neg) / norm
        const = constant_loss(
            r.loss,
            n_cells,
            n_pos,
            float(self._get("sum_y")),
            float(self._get("sum_neg_weight")),
            pos_weight=r.pos_weight,
            alpha=r.focal_alpha,
            beta=r.focal_beta,
            sf_alpha=r.sf_alpha,
            sf_gamma=r.sf_gamma,
        )
        reg_count = float(self._get("reg_count"))
        return {
            "loss": r.loss,
            "pos_weight": r.pos_weight,
            "cls_loss": cls,
            "cls_loss_pos": pos / norm,
            "cls_loss_neg": neg / norm,
            "pos_loss_share": safe_div(pos, pos + neg),
            "constant_loss": const,
            "loss_ratio": safe_div(cls, const) if const > 0 else None,
            "reg_loss": safe_div(float(self._get("reg_sum")), reg_count),
            "reg_loss_centre": safe_div(float(self._get("reg_centre_sum")), reg_count),
            "cells": int(n_cells),
            "positive_cells": int(n_pos),
        }


def _masked(lab: Any, mask: torch.Tensor) -> Any:
    """The labels with ``valid`` restricted to ``mask``."""
    from convdiag.targets.labels import LabelBatch

    return LabelBatch(lab.heatmap, mask, lab.offset, lab.offset_mask)
