"""Log rules on the values alone: non-finite values and loss plateaus."""

from __future__ import annotations

import math

import numpy as np

from convdiag.diagnosis.findings import Finding, Remedy
from convdiag.diagnosis.remedy_catalogue import nonfinite_remedies
from convdiag.diagnosis.thresholds import Thresholds
from convdiag.watch.log_rules_common import at, finite
from convdiag.watch.log_rules_common import ev as evid
from convdiag.watch.mapping import MappedLog


def non_finite(m: MappedLog, axis: str) -> list[Finding]:
    """One non-finite-outputs finding listing every series with NaN or Inf."""
    parts, first, total = [], math.inf, 0
    for key, s in m.series.items():
        bad = ~s.finite
        if bad.any():
            x0 = float(s.x[bad][0])
            first = min(first, x0)
            total += int(bad.sum())
            parts.append(f"{key} ({int(bad.sum())} from {at(axis, x0)})")
    if not parts:
        return []
    return [
        Finding(
            "non-finite-outputs",
            None,
            evid(started_at=first, axis=axis, nonfinite_values=total, series="; ".join(parts)),
            f"NaN or infinite values from {at(axis, first)}: {'; '.join(parts)}. Training "
            "diverged there; every later number is unreliable. Lower the learning rate, cap "
            "the loss weight and check the input scaling.",
            nonfinite_remedies(),
        )
    ]


def plateaus(m: MappedLog, axis: str, th: Thresholds) -> list[Finding]:
    """loss-plateau findings: the longest run of values equal to ``plateau_decimals``."""
    out: list[Finding] = []
    for key in ("loss", "cls_loss", "reg_loss"):
        s = m.series.get(key)
        if s is None:
            continue
        x, v = finite(s)
        if len(v) < th.plateau_points:
            continue
        r = np.round(v, th.plateau_decimals)
        change = np.nonzero(r[1:] != r[:-1])[0] + 1
        starts = np.concatenate([[0], change])
        stops = np.concatenate([change, [len(r)]])
        k = int(np.argmax(stops - starts))
        n = int(stops[k] - starts[k])
        if n < th.plateau_points:
            continue
        a, b = int(starts[k]), int(stops[k]) - 1
        value = float(r[a])
        zero = value == 0.0
        rem: list[Remedy] = []
        if zero:
            why = (
                f"{key} is exactly 0: no positive reaches it (no target cell in the batches: "
                "check the labels, the crops and the stride)"
            )
            rem = [
                Remedy("oversample", {"p": 0.5}, "more crops that hold a target"),
                Remedy("copy-paste", {"n": 2}, "targets pasted into every crop"),
            ]
        else:
            why = (
                f"{key} stays at {value:.6f}: nothing is learned there (a saturated head, a "
                "learning rate too high or too low, frozen parameters)"
            )
        out.append(
            Finding(
                "loss-plateau",
                None,
                evid(
                    series=key,
                    column=m.columns.get(key),
                    value=value,
                    values_equal=n,
                    plateau_points=th.plateau_points,
                    decimals=th.plateau_decimals,
                    started_at=float(x[a]),
                    until=float(x[b]),
                    axis=axis,
                ),
                f"From {at(axis, float(x[a]))} to {at(axis, float(x[b]))}, {n} logged values "
                f"of {why}.",
                rem,
                severity="warning",
            )
        )
    return out
