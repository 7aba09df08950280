"""The remedy catalogue as the remedy stage sees it: ids, defaults, the ranking.

The data lives in ``convdiag.diagnosis.remedy_catalogue`` (the rules attach ranked remedies
to their findings, and a lower folder never imports a higher one); this module is its
public face next to ``remedies.apply``, which turns an id and parameters into a recipe.
"""

from __future__ import annotations

from convdiag.diagnosis.remedy_catalogue import (
    ADVICE_IDS,
    FOCAL_ALPHA,
    FOCAL_BETA,
    NO_PRIOR,
    PRIOR_F1,
    PRIOR_SOURCE,
    PRIOR_WHY,
    REMEDY_DEFAULTS,
    REMEDY_IDS,
    SIGNAL_REMEDIES,
    advice,
    defaults,
    measured_why,
    prior,
    rank,
    score,
    usable,
)

__all__ = [
    "ADVICE_IDS",
    "FOCAL_ALPHA",
    "FOCAL_BETA",
    "NO_PRIOR",
    "PRIOR_F1",
    "PRIOR_SOURCE",
    "PRIOR_WHY",
    "REMEDY_DEFAULTS",
    "REMEDY_IDS",
    "SIGNAL_REMEDIES",
    "advice",
    "defaults",
    "measured_why",
    "prior",
    "rank",
    "score",
    "usable",
]
