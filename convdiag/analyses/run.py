"""The analyze pass: one streaming pass of a model over a dataset feeding every analysis.

The pass (``run_analyses``): for each batch, one forward with autograd on; per output
level, the recipe's labels at its final label parameters (progress 1), the summed
classification loss and the summed offset L1, and by autograd on them the per-cell
gradient w.r.t. the logits and the gradients w.r.t. the classification / offset head
parameters (the backbone is not differentiated: nothing reported needs it). Every analysis
of ``convdiag.analyses`` then sees an ``AnalysisStep``. The same forward feeds the
activation probe (``analyses.activations``: forward hooks on the model's layers, per-channel
output ranges, one probe for every level). Memory is one batch plus fixed-size
accumulators.

Head parameters: ``model.head_parameters()`` ({"cls": [...], "reg": [...]}) when the model
has it (the reference detector does); otherwise parameters whose dotted name has a part
(split at "." and "_") in CLS_TOKENS or in REG_TOKENS, never both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from convdiag.analyses import AnalysisContext, AnalysisStep, Candidate, build_analyses
from convdiag.analyses.activations import ActivationProbe
from convdiag.analyses.base import (
    REGION_BACKGROUND,
    REGION_HOTSPOT,
    REGION_INVALID,
    REGION_NEAR,
    REGION_TARGET,
    Analysis,
)
from convdiag.errors import InputError
from convdiag.load.batching import Batch, iterate_batches, make_batch
from convdiag.load.outputs import LevelOutput
from convdiag.load.recipe import Recipe
from convdiag.load.runner import ModelRunner
from convdiag.load.sample import PointDataset
from convdiag.targets.decode import decode
from convdiag.targets.labels import LabelBatch, render_batch
from convdiag.targets.supervision import cls_loss_sum, label_params

CLS_TOKENS = {"cls", "heatmap", "hm", "score", "scores", "conf", "logit", "logits", "classifier"}
REG_TOKENS = {"reg", "offset", "offsets", "off", "loc", "regression", "delta"}


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
    probe = ActivationProbe(model)  # forward hooks: per-channel ranges, shared by the levels
    analyses = {lv: build_analyses(ctx, counts, probe) for lv, ctx in contexts.items()}
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
        probe.close()
        model.train(was_training)
    return analyses


# --------------------------------------------------------------------------- candidates


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
    act = results.get("activations") or {}
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
        "dead_share": act.get("dead_share"),
        "feeding_dead_share": act.get("feeding_dead_share"),
        "bn_var_max": act.get("bn_var_max"),
        "images": det["images"],
        "targets": det["targets"],
    }


# --------------------------------------------------------------------------- entry points
