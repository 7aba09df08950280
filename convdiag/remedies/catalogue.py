"""The remedy catalogue as the remedy stage sees it: ids, defaults, measured ranking.

The data lives in ``convdiag.diagnosis.remedy_catalogue`` (the rules attach ranked remedies
to their findings, and a lower folder never imports a higher one); this module is its
public face next to ``remedies.apply``, which turns an id and parameters into a recipe.
"""

from __future__ import annotations

from convdiag.diagnosis.remedy_catalogue import (
    ADVICE_IDS,
    FOCAL_ALPHA,
    FOCAL_BETA,
    MEASURED_F1,
    MEASURED_WHY,
    REMEDY_DEFAULTS,
    REMEDY_IDS,
    SIGNAL_REMEDIES,
    UNMEASURED_PRIOR,
    advice,
    defaults,
    measured_why,
    rank,
    score,
    usable,
)

__all__ = [
    "ADVICE_IDS",
    "FOCAL_ALPHA",
    "FOCAL_BETA",
    "MEASURED_F1",
    "MEASURED_WHY",
    "REMEDY_DEFAULTS",
    "REMEDY_IDS",
    "SIGNAL_REMEDIES",
    "UNMEASURED_PRIOR",
    "advice",
    "defaults",
    "measured_why",
    "rank",
    "score",
    "usable",
]
