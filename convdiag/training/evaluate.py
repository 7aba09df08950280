"""Streaming evaluation of a detector on a dataset: detection metrics and losses, pooled.

Used by ``train`` (validation), ``retrain`` (before/after) and ``demo``. Per-image sums are
accumulated and normalised once at the end, so batch size does not change the numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from convdiag.load.batching import iterate_batches
from convdiag.load.outputs import LevelOutput
from convdiag.load.recipe import Recipe
from convdiag.load.runner import ModelRunner
from convdiag.load.sample import PointDataset
from convdiag.targets.decode import DetectionMetrics, decode
from convdiag.targets.geometry import stride_of
from convdiag.targets.supervision import LossAccumulator, batch_labels


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
