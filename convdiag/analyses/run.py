"""``analyze``: load a checkpoint and a dataset, make one streaming pass, diagnose, report.

The pass (``run_analyses``): for each batch, one forward with autograd on; per output
level, the recipe's labels at its final label parameters (progress 1), the summed
classification loss and the summed offset L1, and by autograd on them the per-cell
gradient w.r.t. the logits and the gradients w.r.t. the classification / offset head
parameters (the backbone is not differentiated: nothing reported needs it). Every analysis
of ``convdiag.analyses`` then sees an ``AnalysisStep``. Memory is one batch plus
fixed-size accumulators.

Head parameters: ``model.head_parameters()`` ({"cls": [...], "reg": [...]}) when the model
has it (the reference detector does); otherwise parameters whose dotted name has a part
(split at "." and "_") in CLS_TOKENS or in REG_TOKENS, never both.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from convdiag import __version__
from convdiag.analyses import AnalysisContext, AnalysisStep, Candidate, build_analyses
from convdiag.analyses.base import (
    REGION_BACKGROUND,
    REGION_HOTSPOT,
    REGION_INVALID,
    REGION_NEAR,
    REGION_TARGET,
    Analysis,
    to_plain,
)
from convdiag.errors import InputError
from convdiag.load.batching import Batch, iterate_batches, make_batch
from convdiag.load.outputs import LevelOutput
from convdiag.load.recipe import Recipe
from convdiag.load.runner import ModelRunner
from convdiag.load.sample import PointDataset
from convdiag.remedies.apply import apply_remedy
from convdiag.targets.decode import decode
from convdiag.targets.geometry import grid_size, level_name, stride_of
from convdiag.targets.labels import LabelBatch, render_batch
from convdiag.targets.supervision import cls_loss_sum, label_params
from convdiag.training import distributed as dist

CLS_TOKENS = {"cls", "heatmap", "hm", "score", "scores", "conf", "logit", "logits", "classifier"}
REG_TOKENS = {"reg", "offset", "offsets", "off", "loc", "regression", "delta"}
SCHEMA = 1


# --------------------------------------------------------------------------- head parameters


def head_parameters(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Named parameters of the classification and offset heads (see the module docstring)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    by_id = {id(p): n for n, p in named}
    fn = getattr(model, "head_parameters", None)
    if callable(fn):
        try:
            groups = fn()
            return {
                k: [
                    (by_id.get(id(p), f"{k}.{i}"), p)
                    for i, p in enumerate(groups.get(k, []))
                    if p.requires_grad
                ]
                for k in ("cls", "reg")
            }
        except Exception:  # a user method that fails: fall back on names
            pass
    out: dict[str, list[tuple[str, nn.Parameter]]] = {"cls": [], "reg": []}
    for n, p in named:
        parts = set(re.split(r"[._]", n.lower()))
        is_cls, is_reg = bool(parts & CLS_TOKENS), bool(parts & REG_TOKENS)
        if is_cls != is_reg:
            out["cls" if is_cls else "reg"].append((n, p))
    return out


def _flat(grads: Sequence[torch.Tensor | None], params: Sequence[nn.Parameter]) -> torch.Tensor:
    parts = [
        (g if g is not None else torch.zeros_like(p)).detach().reshape(-1).double().cpu()
        for g, p in zip(grads, params, strict=True)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


# --------------------------------------------------------------------------- the pass


def _regions(
    lab: LabelBatch, soft: torch.Tensor, scores: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(target bool, region int8) maps [B, 1, h, w] (see analyses.base)."""
    valid = lab.valid
    target = (lab.heatmap == 1) & valid
    near = (soft > 0) & ~target & valid
    hot = valid & ~target & ~near & (scores >= threshold)
    region = torch.full(valid.shape, REGION_INVALID, dtype=torch.int8)
    region[valid] = REGION_BACKGROUND
    region[near] = REGION_NEAR
    region[hot] = REGION_HOTSPOT
    region[target] = REGION_TARGET
    return target, region


def make_step(
    ctx: AnalysisContext,
    batch: Batch,
    out: LevelOutput,
    heads: dict[str, list[tuple[str, nn.Parameter]]] | None,
) -> AnalysisStep:
    """Labels, losses and autograd for one level of one batch -> an AnalysisStep (on CPU).

    Non-finite logits are counted and replaced by 0 (their cells get no gradient), as are
    non-finite offsets (by 0.5); parameter gradients are skipped for such a batch.
    """
    recipe, level = ctx.recipe, ctx.level
    cls = out.cls
    kernel, sigma = label_params(recipe, 1.0)
    grid = (int(cls.shape[-2]), int(cls.shape[-1]))
    lab = render_batch(
        batch.points, batch.sizes, grid, level, kernel, sigma, recipe.trunc, cls.device
    )
    valid = lab.valid
    finite = torch.isfinite(cls.detach())
    n_bad = int((~finite & valid).sum())
    differentiable = cls.requires_grad
    z = cls.double() if differentiable else cls.detach().double().requires_grad_(True)
    zs = torch.where(finite, z, torch.zeros((), dtype=z.dtype, device=z.device))
    cls_sum = cls_loss_sum(recipe, zs, lab)
    cls_params = [p for _, p in heads["cls"]] if heads and differentiable and not n_bad else []
    g = torch.autograd.grad(cls_sum, [z, *cls_params], retain_graph=True, allow_unused=True)
    cell_grad = g[0].detach().abs()
    param_grads: dict[str, torch.Tensor | None] | None = None
    if heads is not None and differentiable and not n_bad:
        param_grads = {"cls": _flat(g[1:], cls_params) if cls_params else None, "reg": None}
    reg = out.reg
    n_bad_reg = 0
    reg_d: torch.Tensor | None = None
    if reg is not None:
        rfin = torch.isfinite(reg.detach())
        n_bad_reg = int((~rfin & valid.expand_as(reg)).sum())
        reg_params = [p for _, p in heads["reg"]] if heads else []
        if param_grads is not None and reg_params and reg.requires_grad and not n_bad_reg:
            m = lab.offset_mask.expand_as(reg)
            reg_sum = ((reg.double() - lab.offset.double()).abs() * m).sum()
            rg = torch.autograd.grad(reg_sum, reg_params, retain_graph=True, allow_unused=True)
            param_grads["reg"] = _flat(rg, reg_params)
        reg_d = torch.where(rfin, reg.detach(), torch.full_like(reg, 0.5)).double().cpu()
    logits = zs.detach().cpu()
    lab = lab.to("cpu")
    scores = torch.sigmoid(logits)
    nk, ns, nt = ctx.neighbourhood
    if (nk, ns, nt) == (kernel, sigma, recipe.trunc):
        soft = lab.heatmap
    else:
        soft = render_batch(batch.points, batch.sizes, grid, level, nk, ns, nt).heatmap
    target, region = _regions(lab, soft, scores, ctx.threshold)
    preds = decode(logits, reg_d, ctx.stride, batch.sizes, threshold=0.0, topk=100)
    return AnalysisStep(
        ctx=ctx,
        images=batch.images,
        sizes=batch.sizes,
        points=batch.points,
        indices=batch.indices,
        logits=logits,
        reg=reg_d,
        labels=lab,
        valid=lab.valid,
        target=target,
        region=region,
        cell_grad=cell_grad.cpu(),
        scores=scores,
        preds=preds,
        nonfinite_cls=n_bad,
        nonfinite_reg=n_bad_reg,
        param_grads=param_grads,
    )


def probe_levels(runner: ModelRunner, ds: PointDataset) -> list[str]:
    """The levels the model outputs, from a forward pass on the first image (eval mode, so
    BatchNorm statistics are left alone)."""
    was_training = runner.model.training
    runner.model.eval()
    try:
        with torch.no_grad():
            outs = runner(make_batch(ds, [0], runner.pad_to).images)
    finally:
        runner.model.train(was_training)
    return list(outs)


def run_analyses(
    runner: ModelRunner,
    ds: PointDataset,
    contexts: dict[str, AnalysisContext],
    batch_size: int = 8,
    indices: Sequence[int] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, dict[str, Analysis]]:
    """One streaming pass over ``ds`` feeding every analysis of every level in ``contexts``.

    The model runs in eval mode (restored afterwards). Returns {level: {name: analysis}};
    call ``compute()`` on each.
    """
    model = runner.model
    heads = head_parameters(model)
    counts = {k: int(sum(p.numel() for _, p in v)) for k, v in heads.items()}
    analyses = {lv: build_analyses(ctx, counts) for lv, ctx in contexts.items()}
    was_training = model.training
    model.eval()
    try:
        for batch in iterate_batches(ds, batch_size, runner.pad_to, indices):
            with torch.enable_grad():
                outs = runner(batch.images)
                steps = []
                for lv, ctx in contexts.items():
                    if lv not in outs:
                        raise InputError(
                            f"--levels {lv}: the model outputs {', '.join(outs) or 'nothing'}"
                        )
                    steps.append(make_step(ctx, batch, outs[lv], heads))
            del outs
            with torch.no_grad():
                for step in steps:
                    for a in analyses[step.ctx.level].values():
                        a.update(step)
            if on_batch:
                on_batch(len(batch.sizes))
    finally:
        model.train(was_training)
    return analyses


# --------------------------------------------------------------------------- candidates


def pos_weight_for(neg_per_pos: float | None) -> float:
    """pos_weight from the measured negatives per positive: sqrt(n_neg / n_pos), 2 digits.

    The geometric mean between no weighting (1) and full balancing (n_neg / n_pos), clamped
    to [2, 1000]: full balancing floods false positives at 1:4000.
    """
    if not neg_per_pos or neg_per_pos <= 1:
        return 2.0
    w = math.sqrt(float(neg_per_pos))
    digits = 1 - math.floor(math.log10(w))
    return float(min(max(round(w, digits), 2.0), 1000.0))


def soft_params_for(stride: int, target_radius_px: float | None, trunc: float) -> dict[str, Any]:
    """Soft-label kernel and sigma for a level from the target radius (label_stats rules)."""
    from convdiag.analyses.label_stats import SEED_TARGET_RADIUS, kernel_for, sigma_for

    r = target_radius_px if target_radius_px else SEED_TARGET_RADIUS
    sigma = sigma_for(stride, r)
    return {"kernel": kernel_for(sigma, trunc), "sigma": sigma, "trunc": trunc}


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


def neighbourhood_for(recipe: Recipe, candidates: list[Candidate]) -> tuple[int, float, float]:
    """The soft window defining the neighbourhood region: the recipe's own soft labels at
    progress 1, else the soft-labels candidate's, else 3x3 sigma 1.0."""
    k, s = label_params(recipe, 1.0)
    if k is not None and s is not None:
        return int(k), float(s), float(recipe.trunc)
    for c in candidates:
        if c.remedy == "soft-labels":
            return int(c.params["kernel"]), float(c.params["sigma"]), float(c.params["trunc"])
    return 3, 1.0, float(recipe.trunc)


# --------------------------------------------------------------------------- summary


def level_metrics(results: dict[str, Any]) -> dict[str, Any]:
    """The flat per-level metrics of the report (issue 4 JSON "metrics")."""
    det, sc, lo = results["detections"], results["scores"], results["loss"]
    gr, off, hd = results["gradients"], results["offsets"], results["heads"]
    cur = gr["candidates"].get("current", {})
    outs = results["outputs"]
    return {
        "best_f1": det["best_f1"],
        "best_threshold": det["best_threshold"],
        "best_f1_low": det["best_f1_low"],
        "best_threshold_low": det["best_threshold_low"],
        "f1_at_0.5": det["f1_at_0.5"],
        "precision_at_0.5": det["precision_at_0.5"],
        "recall_at_0.5": det["recall_at_0.5"],
        "fp_per_image": det["fp_per_image_at_0.5"],
        "f1_at_threshold": det["f1_at_threshold"],
        "fp_per_image_at_threshold": det["fp_per_image_at_threshold"],
        "loc_error_px": det["loc_error_px_at_0.5"],
        "auc": sc["auc"],
        "label_prior": sc["label_prior"],
        "mean_score": sc["mean_score"],
        "score_prior_ratio": sc["score_prior_ratio"],
        "peak_score_p50": sc["peak_score"]["p50"],
        "peaks_above_threshold": sc["peaks_above_threshold"],
        "cls_loss": lo["cls_loss"],
        "cls_loss_pos": lo["cls_loss_pos"],
        "cls_loss_neg": lo["cls_loss_neg"],
        "constant_loss": lo["constant_loss"],
        "loss_ratio": lo["loss_ratio"],
        "reg_loss": lo["reg_loss"],
        "pos_grad_share": cur.get("pos_grad_share"),
        "target_area_grad_share": cur.get("target_area_grad_share"),
        "grad_cells_90": cur.get("cells_for_90pct"),
        "cls_grad_norm": hd["cls_grad_norm"],
        "reg_grad_norm": hd["reg_grad_norm"],
        "head_grad_ratio": hd["cls_reg_ratio"],
        "offset_std_ratio": off.get("offset_std_ratio"),
        "offset_r2": off.get("offset_r2"),
        "offset_loc_error_px": (off.get("loc_error_px") or {}).get("model_mean"),
        "nonfinite_fraction": outs["cls_nonfinite_fraction"],
        "images": det["images"],
        "targets": det["targets"],
    }


# --------------------------------------------------------------------------- entry points


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
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Analyze a model (wrapped in ``runner``) on ``ds`` with its training ``recipe``.

    Returns (report, plot arrays per level). The report holds "findings", "metrics",
    "analyses", "labels", "targets", "verdict" (see ``analyze_checkpoint``), without the
    checkpoint fields. ``thresholds``: a ``diagnose.Thresholds`` (default: built-in).
    """
    from convdiag.analyses.label_stats import label_statistics
    from convdiag.analyses.targets import measure_targets
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
    # Under torchrun each rank takes images rank::world; the accumulators are then pooled.
    shard = dist.shard_indices(len(ds))
    analyses = run_analyses(runner, ds, contexts, batch_size, shard, on_batch=on_batch)
    dist.reduce_analyses(analyses)
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


def analyze_checkpoint(
    checkpoint: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    *,
    dataset: Any = None,
    model_opts: Any = None,
    recipe_opts: Any = None,
    levels: Sequence[str] | None = None,
    batch_size: int = 8,
    max_images: int | None = None,
    radius: float = 3.0,
    threshold: float = 0.5,
    device: str = "cpu",
    config: Any = None,
) -> dict[str, Any]:
    """Analyze CHECKPOINT on DATA; with ``out`` write report.json, report.md and the plots.

    dataset / model_opts / recipe_opts: ``options.DatasetOptions`` / ``ModelOptions`` /
    ``RecipeOptions`` (defaults when None); the recipe is the checkpoint's own, updated by
    the recipe flags given. max_images: analyze the first N images only. config: a
    ``config.Config`` (default: read from the working directory) for the thresholds.
    Returns the report: {"schema": 1, "verdict", "findings": [...], "metrics": {level:
    {...}}, "analyses", "labels", "targets", "model", "recipe", "settings", ...}.
    """
    from convdiag.diagnosis.rules import Thresholds
    from convdiag.load.checkpoint import load_checkpoint
    from convdiag.load.config import load_config
    from convdiag.load.datasets import load_dataset
    from convdiag.load.options import DatasetOptions, ModelOptions, RecipeOptions
    from convdiag.load.outputs import resolve_callable
    from convdiag.report.console import progress
    from convdiag.training.distributed import resolve_device
    from convdiag.training.workflow import recipe_from, stored_call

    mo = model_opts or ModelOptions()
    cfg = config if config is not None else load_config()
    th = Thresholds.from_config(cfg.thresholds)
    dev = resolve_device(device)
    out_dir = None
    if out is not None and dist.is_main():
        from convdiag.load.files import prepare_out_dir

        out_dir = prepare_out_dir(out)
    loaded = load_checkpoint(checkpoint, mo.model, dict(mo.model_args), mo.trust_checkpoint)
    flags = recipe_opts or RecipeOptions()
    recipe = recipe_from(loaded.recipe, flags)
    source = "checkpoint" if loaded.recipe else ("flags" if flags.given() else "default")
    ds = load_dataset(data, dataset or DatasetOptions())
    if max_images is not None:
        ds = ds.subset(list(range(min(len(ds), int(max_images)))))
    if len(ds) == 0:
        raise InputError(f"{data}: no image to analyze")
    adapter_spec, outputs = stored_call(loaded.meta, mo)
    adapter = resolve_callable(adapter_spec, "--adapter") if adapter_spec else None
    runner = ModelRunner(loaded.model.to(dev), adapter, outputs, mo.pad_to, dev)
    with progress("analyzing", dist.shard_size(len(ds)), quiet) as advance:
        report, arrays = analyze_dataset(
            runner,
            ds,
            recipe,
            levels,
            batch_size,
            radius,
            threshold,
            th,
            on_batch=lambda n: advance(n),
        )
    report["checkpoint"] = str(checkpoint)
    report["data"] = str(data)
    report["images"] = len(ds)
    report["targets_total"] = ds.num_targets
    report["recipe_source"] = source
    report["model"] = {
        "format": loaded.format,
        "factory": loaded.factory or mo.model,
        "adapter": adapter_spec,
        "outputs": outputs,
        "missing_keys": list(loaded.missing_keys),
        "unexpected_keys": list(loaded.unexpected_keys),
        "notes": list(getattr(loaded, "notes", [])),
        "head_parameters": {
            k: sum(p.numel() for _, p in v) for k, v in head_parameters(loaded.model).items()
        },
    }
    report["settings"].update(
        {
            "max_images": max_images,
            "device": str(dev),
            "pad_to": mo.pad_to,
            "config": str(cfg.path) if cfg.path else None,
        }
    )
    if out_dir is not None:
        write_report(report, arrays, out_dir)
    return report


def write_report(report: dict[str, Any], arrays: dict[str, Any], out: str | Path) -> None:
    """Write plots, report.json and report.md under ``out`` (plots first: the report
    lists them under "plots")."""
    from convdiag.load.files import atomic_write_text, write_json
    from convdiag.report.analyze_report import render_markdown, write_plots

    path = Path(out)
    report["plots"] = write_plots(report, arrays, path)
    write_json(path / "report.json", report)
    atomic_write_text(path / "report.md", render_markdown(report))
