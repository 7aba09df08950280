"""Classification and offset losses for heatmap point detectors.

Shapes: logits, target [B, 1, h, w] (target in [0, 1], soft labels allowed); valid [B, 1, h, w]
bool (False on padding cells, which never count; None = all valid). p = sigmoid(logits); log p
and log(1 - p) are computed as logsigmoid(+-logits) so no loss overflows.

Normalisation (shared with ``label_stats.constant_loss``; ``cls_normalizer`` returns it):

- bce: sum over valid cells of -[w y log p + (1 - y) log(1 - p)] / #valid cells
- focal (CenterNet): [-sum_{y == 1} (1-p)^a log p - sum_{y < 1} (1-y)^b p^a log(1-p)]
  / max(1, #valid cells with y == 1)
- sigmoid-focal: sum over valid of [-al y (1-p)^g log p - (1-al)(1-y) p^g log(1-p)]
  / max(1, #valid cells with y == 1)

``reduction="none"`` returns the per-cell unnormalised contribution [B, 1, h, w] (0 at
invalid cells), ``"sum"`` its sum, ``"mean"`` the sum over the normaliser above. Streaming
analyses pool ``"sum"`` and ``cls_normalizer`` over the dataset and divide once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from convdiag.errors import InputError

if TYPE_CHECKING:
    from convdiag.load.recipe import Recipe

CLS_LOSSES = ("bce", "focal", "sigmoid-focal")


def _valid(target: Tensor, valid: Tensor | None) -> Tensor:
    if valid is None:
        return torch.ones_like(target, dtype=torch.bool)
    return valid.to(torch.bool).expand_as(target)


def _inert(logits: Tensor, valid: Tensor) -> Tensor:
    """Logits with padding cells set to 0, so non-finite padding never reaches a gradient."""
    return torch.where(valid, logits, torch.zeros_like(logits))


def _reduce(per_cell: Tensor, valid: Tensor, normalizer: Tensor, reduction: str) -> Tensor:
    per_cell = torch.where(valid, per_cell, torch.zeros_like(per_cell))
    if reduction == "none":
        return per_cell
    if reduction == "sum":
        return per_cell.sum()
    if reduction == "mean":
        return per_cell.sum() / normalizer.clamp(min=1).to(per_cell.dtype)
    raise ValueError(f"reduction {reduction!r}: use mean, sum or none")


def _check(logits: Tensor, target: Tensor) -> None:
    if logits.shape != target.shape:
        raise InputError(
            f"classification logits {tuple(logits.shape)} and labels {tuple(target.shape)} differ"
        )


def bce_loss(
    logits: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    pos_weight: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy with logits, optional positive weight w.

    per cell: -[w y log p + (1 - y) log(1 - p)], w = pos_weight or 1; "mean" divides the sum
    over valid cells by the number of valid cells. [B,1,h,w] -> scalar (or map for "none").
    """
    _check(logits, target)
    v = _valid(target, valid)
    logits = _inert(logits, v)
    w = 1.0 if pos_weight is None else float(pos_weight)
    per_cell = -(w * target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits))
    return _reduce(per_cell, v, v.sum(), reduction)


def centernet_focal_loss(
    logits: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    alpha: float = 2.0,
    beta: float = 4.0,
    reduction: str = "mean",
    pos_weight: float | None = None,
) -> Tensor:
    """CenterNet penalty-reduced focal loss (works with soft labels).

    per cell: y == 1: -w (1-p)^alpha log p; y < 1: -(1-y)^beta p^alpha log(1-p)
    (w = pos_weight or 1); "mean" divides by max(1, #valid cells with y == 1).
    """
    _check(logits, target)
    v = _valid(target, valid)
    logits = _inert(logits, v)
    pos = target == 1
    w = 1.0 if pos_weight is None else float(pos_weight)
    p, q = torch.sigmoid(logits), torch.sigmoid(-logits)  # q = 1 - p, accurate near p = 1
    pos_term = -w * q.pow(alpha) * F.logsigmoid(logits)
    neg_term = -(1 - target).clamp(min=0).pow(beta) * p.pow(alpha) * F.logsigmoid(-logits)
    per_cell = torch.where(pos, pos_term, neg_term)
    return _reduce(per_cell, v, (pos & v).sum(), reduction)


def sigmoid_focal_loss(
    logits: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
    pos_weight: float | None = None,
) -> Tensor:
    """RetinaNet sigmoid focal loss generalised to soft labels.

    per cell: -w alpha y (1-p)^gamma log p - (1-alpha)(1-y) p^gamma log(1-p) (w = pos_weight
    or 1); "mean" divides by max(1, #valid cells with y == 1). With gamma = 0, alpha = 0.5
    it is 0.5 * BCE-sum / max(1, #positives).
    """
    _check(logits, target)
    v = _valid(target, valid)
    logits = _inert(logits, v)
    w = 1.0 if pos_weight is None else float(pos_weight)
    p, q = torch.sigmoid(logits), torch.sigmoid(-logits)
    per_cell = -(
        w * alpha * target * q.pow(gamma) * F.logsigmoid(logits)
        + (1 - alpha) * (1 - target) * p.pow(gamma) * F.logsigmoid(-logits)
    )
    return _reduce(per_cell, v, ((target == 1) & v).sum(), reduction)


def ohem_bce_loss(
    logits: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    ratio: float = 3.0,
    pos_weight: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Online hard example mining over the batch, on per-cell BCE (pos_weight if given).

    Keeps every valid cell with y > 0 (n_pos of them) and the k = ceil(ratio * max(n_pos, 1))
    valid cells with y == 0 and the highest loss (ties: lower flat index first); "mean" is the
    mean over the kept cells, "sum" their sum, "none" the per-cell map (0 where not kept).
    """
    if ratio < 0:
        raise InputError(f"--ohem {ratio}: the ratio of negatives to positives must be >= 0")
    per_cell = bce_loss(logits, target, valid, pos_weight, reduction="none")
    v = _valid(target, valid)
    with torch.no_grad():
        pos = (target > 0) & v
        neg = (target == 0) & v
        n_pos = int(pos.sum())
        k = min(int(neg.sum()), math.ceil(ratio * max(n_pos, 1)))
        keep_flat = pos.reshape(-1).clone()
        if k > 0:
            flat = torch.where(neg, per_cell, torch.full_like(per_cell, -math.inf)).reshape(-1)
            # A stable descending sort keeps equal losses in index order: deterministic ties.
            order = torch.sort(flat, descending=True, stable=True).indices[:k]
            keep_flat[order] = True
        keep = keep_flat.reshape(pos.shape)
    return _reduce(per_cell, keep, keep.sum(), reduction)


def offset_l1_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean L1 offset error at target cells.

    pred, target [B, 2, h, w]; mask [B, 1, h, w] bool (offset_mask: cells holding a target).
    Returns sum over mask cells and both channels of |pred - target| / (2 * #mask cells),
    and 0 (still connected to ``pred`` for autograd) when no cell is masked. Values of
    ``target`` (and ``pred``) outside the mask are never read into the result or gradient.
    """
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 2:
        raise InputError(
            f"offset prediction {tuple(pred.shape)} and offset targets {tuple(target.shape)} "
            "must both be [B, 2, h, w]"
        )
    m = mask.to(torch.bool).expand_as(pred)
    diff = torch.where(m, pred - torch.where(m, target, torch.zeros_like(target)), 0.0)
    return diff.abs().sum() / m.sum().clamp(min=1).to(pred.dtype)


def loss_ramp_weight(
    progress: float, start: float = 1.0, end: float = 10.0, ramp: float = 0.3, cap: float = 10.0
) -> float:
    """Classification-loss weight at ``progress`` in [0, 1] of training.

    weight = min(cap, start + (end - start) * min(1, progress / ramp)); ramp <= 0 means the
    weight is ``end`` from the start (still capped).
    """
    frac = 1.0 if ramp <= 0 else min(1.0, max(0.0, progress) / ramp)
    return min(cap, start + (end - start) * frac)


def cls_normalizer(loss: str, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per-image normaliser [B] (float64) of a classification loss.

    bce: #valid cells; focal and sigmoid-focal: #valid cells with y == 1. Unclamped: pool over
    the dataset first, then divide the pooled "sum" loss by max(1, pooled normaliser).
    """
    v = _valid(target, valid)
    if loss == "bce":
        counts = v
    elif loss in ("focal", "sigmoid-focal"):
        counts = v & (target == 1)
    else:
        raise InputError(f"--loss {loss!r}: use {', '.join(CLS_LOSSES)}")
    return counts.flatten(1).sum(dim=1).to(torch.float64)


def classification_loss(
    recipe: Recipe,
    logits: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    progress: float = 0.0,
) -> Tensor:
    """The training classification loss of a recipe (scalar).

    recipe.loss picks bce (with recipe.pos_weight; with recipe.ohem, OHEM at that ratio),
    focal (CenterNet, focal_alpha/focal_beta) or sigmoid-focal (sf_alpha/sf_gamma); pos_weight
    also weights the positive term of the focal losses. With recipe.loss_ramp the loss is
    multiplied by ``loss_ramp_weight(progress, **recipe.loss_ramp)``. OHEM is defined on BCE
    only: OHEM with a focal loss is an InputError.
    """
    if recipe.ohem is not None and recipe.loss != "bce":
        raise InputError(f"--ohem works with --loss bce, not --loss {recipe.loss}")
    if recipe.loss == "bce":
        if recipe.ohem is not None:
            out = ohem_bce_loss(logits, target, valid, recipe.ohem, recipe.pos_weight)
        else:
            out = bce_loss(logits, target, valid, recipe.pos_weight)
    elif recipe.loss == "focal":
        out = centernet_focal_loss(
            logits,
            target,
            valid,
            recipe.focal_alpha,
            recipe.focal_beta,
            pos_weight=recipe.pos_weight,
        )
    elif recipe.loss == "sigmoid-focal":
        out = sigmoid_focal_loss(
            logits, target, valid, recipe.sf_alpha, recipe.sf_gamma, pos_weight=recipe.pos_weight
        )
    else:
        raise InputError(f"--loss {recipe.loss!r}: use {', '.join(CLS_LOSSES)}")
    if recipe.loss_ramp:
        out = out * loss_ramp_weight(progress, **recipe.loss_ramp)
    return out
