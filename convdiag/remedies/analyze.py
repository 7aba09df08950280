"""Analyze a model on a dataset: the remedies' counterfactual losses, one pass, the findings.

``analyze_dataset`` measures the targets and the label statistics, builds per level the
candidates (the recipe and each remedy that changes its loss, ``build_candidates``), runs
the one streaming pass of ``convdiag.analyses.run`` (sharded under torchrun, then pooled),
and hands the results to ``convdiag.diagnosis.rules`` for the findings and the verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from convdiag import __version__
from convdiag.analyses import AnalysisContext, Candidate
from convdiag.analyses.base import to_plain
from convdiag.analyses.run import level_metrics, neighbourhood_for, probe_levels, run_analyses
from convdiag.diagnosis.remedy_catalogue import pos_weight_for, soft_params_for
from convdiag.errors import InputError
from convdiag.load.recipe import Recipe
from convdiag.load.runner import ModelRunner
from convdiag.load.sample import PointDataset
from convdiag.remedies.apply import apply_remedy
from convdiag.targets.geometry import grid_size, level_name, stride_of
from convdiag.targets.supervision import label_params

SCHEMA = 1


def build_candidates(
    recipe: Recipe, level: str, level_stats: dict[str, Any], target_radius_px: float | None
) -> list[Candidate]:
    """The recipe ("current") and the counterfactual losses of the remedies that change it:
    soft labels (kernel, sigma from the target size), focal loss, and (BCE) pos_weight."""
    out = [Candidate("current", recipe)]
    if not recipe.soft:
        p = soft_params_for(stride_of(level), target_radius_px, recipe.trunc)
        out.append(
            Candidate("soft-labels", apply_remedy(recipe, "soft-labels", p), "soft-labels", p)
        )
    if recipe.loss != "focal":
        p = {"alpha": 2.0, "beta": 4.0}
        out.append(Candidate("focal-loss", apply_remedy(recipe, "focal-loss", p), "focal-loss", p))
    if recipe.loss == "bce" and not recipe.pos_weight:
        p = {"w": pos_weight_for(level_stats.get("neg_per_pos"))}
        out.append(Candidate("pos-weight", apply_remedy(recipe, "pos-weight", p), "pos-weight", p))
    return out


def analyze_dataset(
    runner: ModelRunner,
    ds: PointDataset,
    recipe: Recipe,
    levels: Sequence[str] | None = None,
    batch_size: int = 8,
    radius: float = 3.0,
    threshold: float = 0.5,
    thresholds: Any = None,
    on_batch: Callable[[int], None] | None = None,
    shard: list[int] | None = None,
    pool: Callable[[dict[str, dict[str, Any]]], None] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Analyze a model (wrapped in ``runner``) on ``ds`` with its training ``recipe``.

    Returns (report, plot arrays per level). The report holds "findings", "metrics",
    "analyses", "labels", "targets", "verdict" (see ``analyze_checkpoint``), without the
    checkpoint fields. ``thresholds``: a ``diagnose.Thresholds`` (default: built-in).
    ``shard``: the image indices this process takes (default: all); ``pool``: merges the
    other processes' accumulators into these ones (under torchrun ``analyze_checkpoint``
    passes ``distributed.shard_indices`` and ``distributed.reduce_analyses``).
    """
    from convdiag.analyses.targets import measure_targets
    from convdiag.diagnosis.labels import label_statistics
    from convdiag.diagnosis.rules import Thresholds, diagnose, verdict

    if len(ds) == 0:
        raise InputError("the dataset holds no image")
    th = thresholds or Thresholds()
    model_levels = probe_levels(runner, ds)
    chosen = [level_name(lv) for lv in levels] if levels else model_levels
    for lv in chosen:
        if lv not in model_levels:
            raise InputError(f"--levels {lv}: the model outputs {', '.join(model_levels)} only")
    targets = measure_targets(ds)
    stat_levels = sorted({*chosen, "P2", "P3", "P4", "P5"}, key=stride_of)
    kernel, sigma = label_params(recipe, 1.0)
    stats = label_statistics(
        [(r.size, r.points) for r in ds.records],
        stat_levels,
        kernel,
        sigma,
        recipe.trunc,
        radius=radius,
        target_radius_px=targets["radius_px"],
    )
    contexts = {}
    example = pick_example(ds)
    for lv in chosen:
        cands = build_candidates(recipe, lv, stats["levels"][lv], targets["radius_px"])
        grids = [grid_size(r.size, lv) for r in ds.records]
        contexts[lv] = AnalysisContext(
            level=lv,
            stride=stride_of(lv),
            recipe=recipe,
            threshold=threshold,
            radius=radius,
            neighbourhood=neighbourhood_for(recipe, cands),
            candidates=cands,
            max_grid=(max(g[0] for g in grids), max(g[1] for g in grids)),
            example_index=example,
        )
    t0 = time.perf_counter()
    analyses = run_analyses(runner, ds, contexts, batch_size, shard, on_batch=on_batch)
    if pool is not None:
        pool(analyses)
    results = {lv: {k: to_plain(a.compute()) for k, a in an.items()} for lv, an in analyses.items()}
    arrays = {lv: {k: a.arrays() for k, a in an.items()} for lv, an in analyses.items()}
    metrics = {lv: level_metrics(res) for lv, res in results.items()}
    findings = diagnose(
        results, metrics, stats, recipe, th, targets=targets, reference=_is_reference(runner.model)
    )
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "analyze",
        "convdiag_version": __version__,
        "verdict": verdict(findings),
        "findings": [f.to_dict() for f in findings],
        "metrics": metrics,
        "levels": chosen,
        "model_levels": model_levels,
        "recipe": recipe.to_dict(),
        "recipe_text": recipe.describe(),
        "settings": {"batch": batch_size, "radius": radius, "threshold": threshold},
        "thresholds": th.to_dict(),
        "targets": targets,
        "labels": {
            "levels": {lv: stats["levels"][lv] for lv in stat_levels},
            "recommendation": stats["recommendation"],
        },
        "analyses": results,
        "seconds": time.perf_counter() - t0,
    }
    return report, arrays


def pick_example(ds: PointDataset, first: int = 64) -> int | None:
    """The image shown in plots: most targets among the first ``first`` (ties: lowest index)."""
    counts = [len(r.points) for r in ds.records[:first]]
    if not counts or max(counts) == 0:
        return None
    return int(np.argmax(counts))


def _is_reference(model: nn.Module) -> bool:
    return type(model).__name__ == "ReferenceDetector"
