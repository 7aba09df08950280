"""The remedy catalogue: stable ids, default parameters, the ranking and its text.

DESIGN.md "Remedies": the ids are the same in a report's recommendations and in ``retrain
--remedy ID[:key=value,...]``. The focal parameters (CenterNet alpha 2, beta 4) come from
``targets.constant_loss``, where the losses define them once.

Ranking (``rank``): evidence about this model first. The evidence of a remedy is the gain in
target-area gradient share that the counterfactual gradient of the same logits under the
remedy shows (``analyses.gradients``), corrected by the label statistics of this dataset
(``rules_common.signal_remedies``); None where nothing on this model measured it. Remedies
whose evidence says they help come first (largest gain first), then those without evidence
or with none either way, then those the evidence says hurt. A prior orders only what the
evidence leaves tied: the F1 each remedy reached on the dim synthetic P2 set of DESIGN.md
"Performance notes", labelled as such (``PRIOR_SOURCE``) wherever it is shown. What a race
measured (``retrain --race``) is the measurement; ``show`` puts it beside this ranking.

This module sits in ``diagnosis/`` because the rules attach ranked remedies to their
findings and a lower folder never imports a higher one; ``convdiag.remedies`` re-exports it
next to the code that applies a remedy to a recipe.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from convdiag.diagnosis.findings import Remedy
from convdiag.targets.constant_loss import FOCAL_ALPHA, FOCAL_BETA

# Parameters of each applicable remedy, with their defaults (``retrain --remedy``).
REMEDY_DEFAULTS: dict[str, dict[str, Any]] = {
    "soft-labels": {"kernel": 3, "sigma": 1.0, "trunc": 0.1},
    "sigma-schedule": {"schedule": "dynamic"},
    "focal-loss": {"alpha": FOCAL_ALPHA, "beta": FOCAL_BETA},
    "pos-weight": {"w": 100.0},
    "ohem": {"ratio": 3.0},
    "loss-ramp": {"start": 1.0, "end": 10.0, "ramp": 0.3, "cap": 10.0},
    "oversample": {"p": 0.5},
    "copy-paste": {"n": 2},
    "level-change": {"level": "P4"},
    "fused-head": {},
}
REMEDY_IDS = tuple(REMEDY_DEFAULTS)
# Recommended with evidence, never applied by retrain.
ADVICE_IDS = (
    "spatial-attention",
    "deformable-conv",
    "position-sensitive-offset",
    "coarse-to-fine",
    "fix-labels",
    "restart-lower-lr",
    "lr-warmup",
    "grad-clip",
    "check-offset-loss",
)

# A prior, not evidence about the user's model: the F1 each remedy reached once on the dim
# synthetic P2 set (DESIGN.md "Performance notes"). It only orders remedies the evidence
# leaves tied, and every text that uses it says where it was measured.
PRIOR_SOURCE = "prior measured on the dim synthetic P2 set"
PRIOR_F1 = {
    "focal-loss": 0.63,
    "soft-labels": 0.63,
    "sigma-schedule": 0.63,
    "pos-weight": 0.45,
    "ohem": 0.01,
}
NO_PRIOR = 0.3  # remedies the synthetic set did not measure sit between pos-weight and OHEM
PRIOR_WHY = {
    "focal-loss": "focal loss alone fixed P2 (F1 0.63)",
    "soft-labels": "soft labels matched focal loss (F1 ~0.63)",
    "sigma-schedule": "the dynamic schedule matched focal loss (F1 ~0.63)",
    "pos-weight": "pos_weight 100 helped partly (F1 0.45)",
    "ohem": "OHEM 3:1 with hard labels failed (F1 0.01)",
}
NO_PRIOR_WHY = "no prior for it (not measured on the dim synthetic P2 set)"
# Gains in target-area gradient share within this of 0 count as no evidence either way.
EVIDENCE_EPS = 0.005

# The learning-signal remedies every collapse rule draws from, in catalogue order.
SIGNAL_REMEDIES = (
    "focal-loss",
    "soft-labels",
    "sigma-schedule",
    "pos-weight",
    "loss-ramp",
    "oversample",
    "ohem",
)


def defaults(rid: str) -> dict[str, Any]:
    """A fresh copy of the default parameters of remedy ``rid``."""
    return dict(REMEDY_DEFAULTS[rid])


def measured_why(rid: str) -> str:
    """The prior's text for ``rid``, labelled with where it was measured (``PRIOR_SOURCE``),
    or that there is none."""
    why = PRIOR_WHY.get(rid)
    return f"{PRIOR_SOURCE}: {why}" if why else NO_PRIOR_WHY


def prior(rid: str) -> float:
    """The prior F1 of ``rid`` (PRIOR_F1, else NO_PRIOR): a tie-breaker, never evidence."""
    return PRIOR_F1.get(rid, NO_PRIOR)


def score(rid: str, gain: float | None = None) -> tuple[int, float, float]:
    """The sort key of ``rank`` (smaller first): (band, -evidence, -prior), band 0 when the
    evidence ``gain`` on this model is above EVIDENCE_EPS, 1 without evidence either way
    (None or within EVIDENCE_EPS of 0), 2 when it is below -EVIDENCE_EPS."""
    if gain is None or not math.isfinite(gain) or abs(gain) <= EVIDENCE_EPS:
        return (1, 0.0, -prior(rid))
    return (0 if gain > 0 else 2, -gain, -prior(rid))


def rank(candidates: Iterable[tuple[Remedy, float | None]]) -> list[Remedy]:
    """The remedies of (remedy, evidence gain or None) pairs, ordered by ``score``: what the
    evidence on this model says first, the prior only among ties (stable)."""
    scored = [(score(r.id, g), i, r) for i, (r, g) in enumerate(candidates)]
    scored.sort(key=lambda sr: (sr[0], sr[1]))
    return [r for _, _, r in scored]


def usable(rid: str, *, loss: str, soft: bool = False, schedule: bool = False,
           pos_weight: bool = False, ohem: bool = False, loss_ramp: bool = False,
           oversample: bool = False) -> bool:  # fmt: skip
    """Whether remedy ``rid`` changes a run with this recipe (one it already uses does not;
    pos-weight and OHEM apply to BCE only)."""
    if rid == "focal-loss":
        return loss != "focal"
    if rid == "soft-labels":
        return not soft
    if rid == "sigma-schedule":
        return not schedule
    if rid == "pos-weight":
        return not pos_weight and loss == "bce"
    if rid == "ohem":
        return not ohem and loss == "bce"
    if rid == "loss-ramp":
        return not loss_ramp
    if rid == "oversample":
        return not oversample
    return True


def nonfinite_remedies() -> list[Remedy]:
    """What every surface proposes for NaN or infinite values."""
    return [
        Remedy(
            "loss-ramp",
            defaults("loss-ramp"),
            "a capped cls-loss weight ramp avoids the early blow-up of large weights",
        )
    ]


def advice(rid: str, why: str) -> Remedy:
    """Architecture advice: recommended with evidence, never applied by ``retrain``."""
    return Remedy(rid, {}, why, applied=False)


# ------------------------------------------------------- parameters derived from the data


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
