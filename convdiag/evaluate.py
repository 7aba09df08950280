"""Streaming evaluation of a detector on a dataset: detection metrics and losses, pooled.

Used by ``train`` (validation), ``retrain`` (before/after) and ``demo``. Per-image sums are
accumulated and normalised once at the end, so batch size does not change the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from convdiag import losses
from convdiag.batching import Batch, iterate_batches
from convdiag.data.sample import PointDataset
from convdiag.decode import DetectionMetrics, decode
from convdiag.geometry import stride_of
from convdiag.label_stats import constant_loss
from convdiag.labels import LabelBatch, parse_schedule, render_batch
from convdiag.models.outputs import LevelOutput, normalize_outputs
from convdiag.recipe import Recipe


@dataclass
class ModelRunner:
    """A model with the way to call it: adapter, output kind (logits/probs), padding, device."""

    model: nn.Module
    adapter: Callable[[Any], Any] | None = None
    outputs: str = "logits"
    pad_to: int = 32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __call__(self, images: torch.Tensor) -> dict[str, LevelOutput]:
        """Forward images [B, C, Hp, Wp] -> normalised outputs per level (logits)."""
        raw = self.model(images.to(self.device))
        return normalize_outputs(
            raw, (images.shape[-2], images.shape[-1]), self.outputs, self.adapter
        )


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


def pick_level(outputs: dict[str, LevelOutput], recipe: Recipe) -> str:
    """The output level the recipe supervises, else the finest the model has."""
    return recipe.level if recipe.level in outputs else next(iter(outputs))


SUMMARY_KEYS = (
    "f1_at_0.5",
    "best_f1",
    "best_threshold",
    "precision",
    "recall",
    "fp_per_image",
    "loc_error_px",
    "cls_loss",
    "constant_loss",
)


@torch.no_grad()
def evaluate(
    runner: ModelRunner,
    ds: PointDataset,
    recipe: Recipe,
    batch_size: int = 8,
    radius: float = 3.0,
    progress: float = 1.0,
) -> dict[str, Any]:
    """Evaluate on ``ds``: detection metrics at the recipe's level and the pooled losses.

    Returns the SUMMARY_KEYS scalars (precision, recall, fp_per_image, loc_error_px at
    threshold 0.5), ``reg_loss``, ``loss_ratio``, ``level`` and ``curves`` (per threshold).
    """
    was_training = runner.model.training
    runner.model.eval()
    metrics = DetectionMetrics(radius=radius)
    acc = LossAccumulator(recipe)
    level = recipe.level
    try:
        for batch in iterate_batches(ds, batch_size, runner.pad_to):
            outs = runner(batch.images)
            level = pick_level(outs, recipe)
            out = outs[level]
            lab = batch_labels(recipe, batch, out, level, progress)
            acc.update(out.cls, out.reg, lab)
            preds = decode(out.cls, out.reg, stride_of(level), batch.sizes, threshold=0.0)
            metrics.update(preds, batch.points, batch.sizes)
    finally:
        runner.model.train(was_training)
    det = metrics.compute()
    res: dict[str, Any] = {k: det[k] for k in SUMMARY_KEYS if k in det}
    res.update(acc.compute())
    res["level"] = level
    res["curves"] = {
        k: det["curves"][k] for k in ("thresholds", "precision", "recall", "f1", "fp_per_image")
    }
    return {k: _plain(v) for k, v in res.items()}


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.floating | np.integer):
        return v.item()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v
