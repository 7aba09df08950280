"""The ``labels`` surface: label statistics with the risks judged by the rule core.

``label_statistics`` measures (``analyses.label_stats.label_measurements``) and adds the
findings of ``rules_labels.label_findings`` by the one ``Thresholds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from convdiag.analyses.displacement import label_agreement
from convdiag.analyses.label_stats import (
    DEFAULT_LEVELS,
    MATCH_RADIUS,
    label_measurements,
)
from convdiag.diagnosis.rules_labels import label_findings
from convdiag.diagnosis.thresholds import Thresholds
from convdiag.load.sample import LabelPairs
from convdiag.targets.labels import DEFAULT_TRUNC, Schedule


def label_statistics(
    records: Sequence[tuple[tuple[int, int], Any]],
    levels: Sequence[str | int] = DEFAULT_LEVELS,
    kernel: int | None = None,
    sigma: float | None = None,
    trunc: float = DEFAULT_TRUNC,
    schedule: Schedule | None = None,
    *,
    radius: float = MATCH_RADIUS,
    target_radius_px: float | np.ndarray | None = None,
    thresholds: Thresholds | None = None,
    pairs: LabelPairs | None = None,
) -> dict[str, Any]:
    """Label statistics per level, findings (risks) and a recommendation, as plain data.

    Arguments as ``label_measurements``; ``thresholds``: the diagnosis thresholds (default
    built-in); ``pairs``: a second annotation of the same targets, compared with the
    first (``label_agreement``, judged for label-shift). Returns ``{"settings", "levels":
    {"P2": {...}, ...}, "findings": [...], "recommendation": {...}}`` (plus
    ``"label_agreement"`` with ``pairs``) (shape in docs of the ``labels`` command).
    """
    out = label_measurements(
        records, levels, kernel, sigma, trunc, schedule,
        radius=radius, target_radius_px=target_radius_px,
    )  # fmt: skip
    rec = out.pop("recommendation")
    if pairs is not None:
        out["label_agreement"] = label_agreement(pairs, radius)
    out["findings"] = [f.to_dict() for f in label_findings(out, thresholds)]
    out["recommendation"] = rec
    return out
