"""What the log rules share: the ``Reference`` the losses are compared with, the stretch
and window helpers, evidence rounding and the learning-signal remedies (the catalogue's,
ordered by the catalogue's prior alone: a log has no gradients, so no evidence on the model)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from convdiag.diagnosis.findings import Remedy
from convdiag.diagnosis.remedy_catalogue import (
    SIGNAL_REMEDIES,
    defaults,
    measured_why,
    rank,
    usable,
)
from convdiag.watch.table import Series


@dataclass
class Reference:
    """What the losses are compared with, and what the remedies need.

    constant_loss: the best constant predictor's classification loss (``--loss`` kind) from
    the prior; reg_constant: the offset L1 loss (mean over both axes) of the best constant
    offset, 0.25 for offsets uniform in [0, 1). offsets_needed: whether the cell-centre
    RMS error exceeds 0.6 x the match radius at ``level`` (None: level unknown).
    """

    level: str | None = None
    loss: str = "bce"
    prior: float | None = None
    prior_source: str | None = None
    constant_loss: float | None = None
    constant_source: str | None = None
    reg_constant: float = 0.25
    reg_constant_source: str = "offsets uniform in [0, 1): E|t - 0.5| = 0.25"
    neg_per_pos: float | None = None
    coarser_level: str | None = None
    finer_level: str | None = None
    soft: dict[str, Any] = field(default_factory=lambda: {"kernel": 3, "sigma": 1.0, "trunc": 0.1})
    offsets_needed: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


# --------------------------------------------------------------------------- helpers


def finite(s: Series) -> tuple[np.ndarray, np.ndarray]:
    """(x, values) of the finite values of ``s``."""
    ok = s.finite
    return s.x[ok], s.values[ok]


def stays_from(cond: np.ndarray) -> int | None:
    """Index where the final run of True in ``cond`` starts; None if the last is False."""
    if len(cond) == 0 or not cond[-1]:
        return None
    false = np.nonzero(~cond)[0]
    return int(false[-1] + 1) if len(false) else 0


def trailing_median(v: np.ndarray, k: int) -> np.ndarray:
    """out[i] = median(v[max(0, i - k + 1) : i + 1])."""
    return np.array([np.median(v[max(0, i - k + 1) : i + 1]) for i in range(len(v))])


def ends(v: np.ndarray) -> tuple[float, float]:
    """Medians of the first and last quarter of ``v`` (at least one value each)."""
    q = max(1, len(v) // 4)
    return float(np.median(v[:q])), float(np.median(v[-q:]))


def rel_drop(first: float, last: float) -> float | None:
    """1 - last / first (None when first is 0)."""
    return None if first == 0 else 1.0 - last / first


def rnd(v: Any, digits: int = 4) -> Any:
    """``v`` rounded to ``digits`` significant digits (non-floats unchanged)."""
    if isinstance(v, float | np.floating) and math.isfinite(v) and v != 0:
        return float(f"{float(v):.{digits}g}")
    return v


def ev(**kw: Any) -> dict[str, Any]:
    """Evidence: the keyword values, rounded."""
    return {k: rnd(v) for k, v in kw.items()}


def at(axis: str, x: float) -> str:
    """ "step 120" or "epoch 3"."""
    return f"{axis} {x:g}"


# --------------------------------------------------------------------------- remedies


def signal_remedies(ref: Reference) -> list[Remedy]:
    """Remedies that move the learning signal to the targets, in the order of the prior
    measured on the dim synthetic P2 set (labelled so in each text); those the run uses
    (``ref.loss``) are left out; then a coarser level (from ``--data``) and advice."""
    from convdiag.diagnosis.remedy_catalogue import pos_weight_for

    cands: list[Remedy] = []
    for rid in SIGNAL_REMEDIES:
        if not usable(rid, loss=ref.loss):
            continue
        params = defaults(rid)
        if rid == "soft-labels":
            params = dict(ref.soft)
        elif rid == "pos-weight" and ref.neg_per_pos:
            params = {"w": pos_weight_for(ref.neg_per_pos)}
        r = Remedy(rid, params, measured_why(rid))
        if rid == "pos-weight" and ref.neg_per_pos:
            r.why += f"; w = sqrt({ref.neg_per_pos:,.0f} negatives per positive)"
        cands.append(r)
    # No gradients in a log: no evidence on the model (None), the prior alone orders.
    cands = rank((r, None) for r in cands)
    if ref.coarser_level:
        cands.append(
            Remedy(
                "level-change",
                {"level": ref.coarser_level},
                f"{ref.coarser_level} has <= 1,000 negatives per positive (reference detector)",
            )
        )
    cands.append(
        Remedy(
            "spatial-attention",
            {},
            "helps a dim target stand out from clutter (seed)",
            applied=False,
        )
    )
    return cands
