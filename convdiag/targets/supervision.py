"""What a recipe supervises: its labels for a batch at a progress, its plain classification
loss, and the pooled losses against the constant predictor's."""

from __future__ import annotations

from typing import Any

import torch

from convdiag.load.batching import Batch
from convdiag.load.outputs import LevelOutput
from convdiag.load.recipe import Recipe
from convdiag.targets import losses
from convdiag.targets.constant_loss import constant_loss
from convdiag.targets.labels import LabelBatch, render_batch
from convdiag.targets.schedules import parse_schedule


def label_params(recipe: Recipe, progress: float) -> tuple[int | None, float | None]:
    """(kernel, sigma) of the recipe's labels at a progress in [0, 1]; hard: (None, None)."""
    if recipe.schedule:
        return parse_schedule(recipe.schedule).at(min(progress, 0.999999))
    if recipe.labels == "soft":
        return recipe.kernel, recipe.sigma
    return None, None


def batch_labels(
    recipe: Recipe, batch: Batch, out: LevelOutput, level: str, progress: float
) -> LabelBatch:
    """Render the recipe's labels for one batch at one level, on the output's grid."""
    kernel, sigma = label_params(recipe, progress)
    grid = (int(out.cls.shape[-2]), int(out.cls.shape[-1]))
    return render_batch(
        batch.points, batch.sizes, grid, level, kernel, sigma, recipe.trunc, out.cls.device
    )


def plain_loss_kwargs(recipe: Recipe) -> dict[str, Any]:
    """Keyword arguments of the recipe's plain classification loss (no OHEM, no ramp)."""
    if recipe.loss == "focal":
        return {"alpha": recipe.focal_alpha, "beta": recipe.focal_beta}
    if recipe.loss == "sigmoid-focal":
        return {"alpha": recipe.sf_alpha, "gamma": recipe.sf_gamma}
    return {"pos_weight": recipe.pos_weight}


def cls_loss_sum(recipe: Recipe, logits: torch.Tensor, lab: LabelBatch) -> torch.Tensor:
    """Unnormalised sum of the recipe's plain classification loss over valid cells."""
    fn = {
        "bce": losses.bce_loss,
        "focal": losses.centernet_focal_loss,
        "sigmoid-focal": losses.sigmoid_focal_loss,
    }[recipe.loss]
    return fn(logits, lab.heatmap, lab.valid, reduction="sum", **plain_loss_kwargs(recipe))  # type: ignore[operator]


class LossAccumulator:
    """Pooled classification and offset losses, and the constant-predictor loss of the labels.

    cls_loss = sum of per-cell losses / pooled normaliser (valid cells for BCE, target cells
    for the focal kinds); constant_loss = the best constant predictor's loss on the same labels.
    """

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.cls_sum = 0.0
        self.n_cells = 0.0
        self.n_pos = 0.0
        self.sum_y = 0.0
        self.sum_neg_weight = 0.0
        self.reg_sum = 0.0
        self.reg_count = 0.0

    def update(self, logits: torch.Tensor, reg: torch.Tensor | None, lab: LabelBatch) -> None:
        """Add one batch: logits [B,1,h,w], reg [B,2,h,w] or None, its labels."""
        with torch.no_grad():
            y = lab.heatmap.double()
            valid = lab.valid
            self.cls_sum += float(cls_loss_sum(self.recipe, logits.double(), lab))
            self.n_cells += float(valid.sum())
            self.n_pos += float(((y == 1) & valid).sum())
            self.sum_y += float((y * valid).sum())
            neg = (y < 1) & valid
            self.sum_neg_weight += float((((1 - y) ** self.recipe.focal_beta) * neg).sum())
            if reg is not None:
                m = lab.offset_mask.expand_as(reg)
                self.reg_sum += float(((reg.double() - lab.offset.double()).abs() * m).sum())
                self.reg_count += float(m.sum())

    def compute(self) -> dict[str, float]:
        """cls_loss, constant_loss, their ratio, reg_loss (NaN without offsets)."""
        r = self.recipe
        if r.loss == "bce":
            cls = self.cls_sum / max(self.n_cells, 1.0)
        else:
            cls = self.cls_sum / max(self.n_pos, 1.0)
        const = constant_loss(
            r.loss,
            self.n_cells,
            self.n_pos,
            self.sum_y,
            self.sum_neg_weight,
            pos_weight=r.pos_weight,
            alpha=r.focal_alpha,
            beta=r.focal_beta,
            sf_alpha=r.sf_alpha,
            sf_gamma=r.sf_gamma,
        )
        return {
            "cls_loss": cls,
            "constant_loss": const,
            "loss_ratio": cls / const if const > 0 else float("nan"),
            "reg_loss": self.reg_sum / self.reg_count if self.reg_count else float("nan"),
        }
