"""What the model rules share: evidence rounding, the rule context, the level helpers and
the learning-signal remedies ranked by ``remedy_catalogue``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from convdiag.diagnosis.findings import Remedy
from convdiag.diagnosis.remedy_catalogue import (
    SIGNAL_REMEDIES,
    advice,
    defaults,
    measured_why,
    nonfinite_remedies,
    rank,
    usable,
)
from convdiag.diagnosis.thresholds import Thresholds
from convdiag.load.recipe import Recipe
from convdiag.targets.geometry import stride_of

# --------------------------------------------------------------------------- helpers


def rnd(v: Any, digits: int = 4) -> Any:
    """Round floats to ``digits`` significant digits for evidence (None stays None)."""
    if isinstance(v, float) and math.isfinite(v) and v != 0:
        return float(f"{v:.{digits}g}")
    return v


def ev(**kw: Any) -> dict[str, Any]:
    return {k: rnd(v) for k, v in kw.items()}


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def soft_params(stride: int, targets: dict[str, Any] | None, trunc: float) -> dict[str, Any]:
    """Soft-label parameters at a stride from the measured target radius (label_stats rules:
    sigma = radius / stride clamped to 0.8-1.2, kernel = smallest odd window >= trunc)."""
    from convdiag.diagnosis.remedy_catalogue import soft_params_for

    return soft_params_for(stride, (targets or {}).get("radius_px"), trunc)


def coarser_level(level: str, stats: dict[str, Any], th: Thresholds) -> str | None:
    """The finest level coarser than ``level`` with <= 1,000 negatives per positive and few
    collisions, from the label statistics (None if none)."""
    s = stride_of(level)
    for name, v in sorted(stats["levels"].items(), key=lambda kv: kv[1]["stride"]):
        npp = v.get("neg_per_pos")
        few = v["collision_share"] <= th.collision_share_max
        if v["stride"] > s and npp is not None and npp <= th.neg_per_pos_max and few:
            return str(name)
    return None


def finer_level(level: str, stats: dict[str, Any], radius: float, th: Thresholds) -> str | None:
    """The coarsest level finer than ``level`` whose quantisation p95 is under the radius
    and whose collisions stay under the maximum (None if none)."""
    s = stride_of(level)
    best = None
    for name, v in sorted(stats["levels"].items(), key=lambda kv: kv[1]["stride"]):
        q = v["quantization_px"]["p95"]
        few = v["collision_share"] <= th.collision_share_max
        if v["stride"] < s and q is not None and q < radius and few:
            best = str(name)
    return best


@dataclass
class Ctx:
    """What one level's rules read: its analyses, metrics, label statistics and recipe."""

    level: str
    res: dict[str, Any]
    m: dict[str, Any]
    stats: dict[str, Any]
    lstats: dict[str, Any]
    recipe: Recipe
    th: Thresholds
    targets: dict[str, Any] | None
    reference: bool
    radius: float

    @property
    def cf(self) -> dict[str, Any]:
        out: dict[str, Any] = self.res["gradients"]["candidates"]
        return out


def signal_remedies(c: Ctx, include: Iterable[str]) -> list[Remedy]:
    """Remedies that move the learning signal toward the targets, ranked by the evidence on
    this model (``remedy_catalogue.rank``): the gain in target-area gradient share that the
    counterfactual gradient of the same logits under the remedy shows (the soft-label one
    for the schedule; None without a counterfactual), with no credit for pos-weight's gain
    beyond ``neg_per_pos_max`` negatives per positive in this dataset's labels (weighting
    positives that rare floods false positives). The synthetic-set prior breaks ties only."""
    r = c.recipe
    stride = stride_of(c.level)
    cur = c.cf.get("current", {}).get("target_area_grad_share")
    uses: dict[str, Any] = {
        "loss": r.loss,
        "soft": bool(r.soft),
        "schedule": bool(r.schedule),
        "pos_weight": bool(r.pos_weight),
        "ohem": r.ohem is not None,
        "loss_ramp": bool(r.loss_ramp),
        "oversample": r.oversample > 0,
    }
    out: list[tuple[Remedy, float | None]] = []
    npp = c.lstats.get("neg_per_pos")
    for rid in include:
        if rid not in SIGNAL_PARAMS or not usable(rid, **uses):
            continue
        params: dict[str, Any]
        if rid == "soft-labels":
            params = soft_params(stride, c.targets, r.trunc)
        elif rid == "pos-weight":
            from convdiag.diagnosis.remedy_catalogue import pos_weight_for

            params = {"w": pos_weight_for(c.lstats.get("neg_per_pos"))}
        else:
            params = defaults(rid)
        cf_name = "soft-labels" if rid == "sigma-schedule" else rid
        new = c.cf.get(cf_name, {}).get("target_area_grad_share")
        gain = (new - cur) if new is not None and cur is not None else None
        parts = []
        if gain is not None:
            parts.append(
                f"on this model it moves the target-area gradient share {pct(cur)} -> {pct(new)}"
            )
        if rid == "soft-labels":
            parts.append(soft_why(c, params))
        if rid == "sigma-schedule" and gain is not None:
            parts.append("(the soft-label counterfactual)")
        if rid == "pos-weight":
            parts.append(f"w = sqrt({num(npp)} negatives per positive)")
            if gain is not None and gain > 0 and npp is not None and npp > c.th.neg_per_pos_max:
                gain = 0.0
                parts.append(f"no credit for that gain: beyond {c.th.neg_per_pos_max:,.0f} "
                             "negatives per positive, weighting positives floods false "
                             "positives")  # fmt: skip
        parts.append(measured_why(rid))
        out.append((Remedy(rid, params, "; ".join(parts)), gain))
    return rank(out)


SIGNAL_PARAMS = (
    "focal-loss",
    "soft-labels",
    "sigma-schedule",
    "pos-weight",
    "ohem",
    "loss-ramp",
    "oversample",
)


def soft_why(c: Ctx, params: dict[str, Any]) -> str:
    rad = (c.targets or {}).get("radius_px")
    src = f"measured target radius {rad:.2f} px" if rad else "the seed's 2.5 px target radius"
    return (
        f"{params['kernel']}x{params['kernel']}, sigma {params['sigma']:g} cells from the {src} "
        f"/ stride {stride_of(c.level)}, clamped to 0.8-1.2"
    )


def level_change(c: Ctx, level: str | None, why: str) -> list[Remedy]:
    """A level-change remedy, with the imbalance it brings when the new level is finer."""
    if level is None:
        return []
    note = "" if c.reference else " (architecture change: reference detector only)"
    npp = c.stats["levels"].get(level, {}).get("neg_per_pos")
    if stride_of(level) < stride_of(c.level) and npp is not None and npp > c.th.neg_per_pos_max:
        note += (f"; {level} has {npp:,.0f} negatives per positive: train it with focal "
                 "loss or soft labels")  # fmt: skip
    return [Remedy("level-change", {"level": level}, why + note)]


__all__ = ["SIGNAL_REMEDIES", "Ctx", "advice", "defaults", "nonfinite_remedies", "rnd"]
