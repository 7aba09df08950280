"""Planning a remedy race: rungs of successive halving, their cost, budgets, the halving order.

Pure functions, no training. A race has ``k`` candidate arms (remedies), one baseline arm
(the checkpoint's own recipe, always trained to the end), and, when ``k >= 2``, the
combination of the two best single remedies, which joins at rung 1 (once the best two are
known) and trains from the checkpoint to that rung's steps.

Candidates per rung: n_0 = k, n_1 = ceil(k / 2) (+ 1 with the combination), then
n_{i+1} = ceil(n_i / 2) while n_i > 2. The last rung holds at most two candidates (its best
is the winner). Every arm's steps are cumulative: rung i ends at step
c_i = round(N / 2^(R-1-i)) (strictly increasing, c_{R-1} = N), so each rung costs about as
much as the one before and the winner trains N steps like a plain ``retrain --steps N``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from convdiag.errors import InputError

BUDGET_MARGIN = 0.9  # the plan aims at this share of the budget (the rest: slack)


@dataclass(frozen=True)
class Rung:
    """One rung: its index, the cumulative step every arm in it reaches, how many candidate
    arms train in it, and how many of them go on to the next rung (0 after the last)."""

    index: int
    steps: int
    candidates: int
    keep: int


@dataclass(frozen=True)
class RacePlan:
    """The rungs of a race with ``k`` candidates and N = ``final_steps`` (the last rung's)."""

    rungs: tuple[Rung, ...]
    k: int
    combo: bool

    @property
    def final_steps(self) -> int:
        """N: the steps of the winner and the baseline."""
        return self.rungs[-1].steps

    def total_steps(self) -> int:
        """Training steps over every arm: the baseline's N, plus each candidate's steps at
        the rung where it stops (the combination counted from 0, as it starts at rung 1)."""
        total = self.final_steps  # the baseline
        for r in self.rungs:
            stopped = r.candidates - r.keep if r.index < len(self.rungs) - 1 else r.candidates
            total += stopped * r.steps
        return total

    def evaluations(self) -> int:
        """Validation passes: every arm in every rung, the baseline included."""
        return sum(r.candidates + 1 for r in self.rungs)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for race.json."""
        return {
            "k": self.k,
            "combo": self.combo,
            "rungs": [
                {"index": r.index, "steps": r.steps, "candidates": r.candidates, "keep": r.keep}
                for r in self.rungs
            ],
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RacePlan:
        """The plan stored by ``to_dict``."""
        rungs = tuple(Rung(int(r["index"]), int(r["steps"]), int(r["candidates"]),
                           int(r["keep"])) for r in d["rungs"])  # fmt: skip
        return RacePlan(rungs, int(d["k"]), bool(d["combo"]))


def candidate_counts(k: int, combo: bool = True) -> list[int]:
    """Candidates per rung (see the module docstring); [k] for k <= 2 without combination."""
    if k < 1:
        raise InputError("--arms: the race needs at least one candidate remedy")
    with_combo = combo and k >= 2
    counts = [k]
    if with_combo:
        counts.append(math.ceil(k / 2) + 1)
    while counts[-1] > 2:
        counts.append(math.ceil(counts[-1] / 2))
    return counts


def plan_rungs(k: int, final_steps: int, combo: bool = True) -> RacePlan:
    """The plan for ``k`` candidates whose winner trains ``final_steps`` steps.

    c_i = max(c_{i-1} + 1, round(N / 2^(R-1-i))); InputError naming --steps when N < R
    (every rung needs at least one step more than the one before).
    """
    counts = candidate_counts(k, combo)
    n_rungs = len(counts)
    if final_steps < n_rungs:
        raise InputError(
            f"--steps {final_steps}: a race of {k} arms has {n_rungs} rungs; "
            f"use at least {n_rungs} steps"
        )
    steps: list[int] = []
    for i in range(n_rungs):
        c = max(1, round(final_steps / 2 ** (n_rungs - 1 - i)))
        steps.append(max(c, steps[-1] + 1) if steps else c)
    # the increments may overshoot N for tiny N: pull the tail back under it
    steps[-1] = final_steps
    for i in range(n_rungs - 2, -1, -1):
        steps[i] = min(steps[i], steps[i + 1] - 1)
    with_combo = combo and k >= 2
    rungs = []
    for i, n in enumerate(counts):
        nxt = counts[i + 1] - (1 if with_combo and i == 0 else 0) if i + 1 < n_rungs else 0
        rungs.append(Rung(i, steps[i], n, nxt))
    return RacePlan(tuple(rungs), k, with_combo)


def plan_seconds(plan: RacePlan, step_s: float, eval_s: float, jobs: int = 1) -> float:
    """Planned wall time: (total steps x seconds per step + evaluations x seconds per
    evaluation) / jobs (arms of a rung run side by side in ``jobs`` processes)."""
    return (plan.total_steps() * step_s + plan.evaluations() * eval_s) / max(1, jobs)


def plan_for_budget(
    k: int, budget_s: float, step_s: float, eval_s: float, jobs: int = 1, combo: bool = True
) -> RacePlan:
    """The plan with the largest N whose ``plan_seconds`` fits BUDGET_MARGIN x ``budget_s``.

    Total steps grow with N, so N is found by bisection. InputError naming --budget when
    even the smallest plan does not fit.
    """
    n_rungs = len(candidate_counts(k, combo))
    aim = BUDGET_MARGIN * budget_s
    lo = n_rungs
    if plan_seconds(plan_rungs(k, lo, combo), step_s, eval_s, jobs) > aim:
        raise InputError(
            f"--budget {format_seconds(budget_s)}: too short for a race of {k} arms "
            f"(about {format_seconds(step_s)} per step, {format_seconds(eval_s)} per validation)"
        )
    hi = lo
    while plan_seconds(plan_rungs(k, hi * 2, combo), step_s, eval_s, jobs) <= aim and hi < 1 << 30:
        hi *= 2
    hi *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if plan_seconds(plan_rungs(k, mid, combo), step_s, eval_s, jobs) <= aim:
            lo = mid
        else:
            hi = mid
    return plan_rungs(k, lo, combo)


def parse_budget(text: str) -> float:
    """``10m``, ``90s``, ``1h``, ``1h30m`` or plain seconds -> seconds (> 0). InputError
    naming --budget otherwise."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        secs = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", t)
        if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([hms])", "", t).strip():
            raise InputError(f"--budget {text!r}: use e.g. 10m, 90s, 1h30m or seconds")
        secs = sum(float(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in parts)
    if not (math.isfinite(secs) and secs > 0):
        raise InputError(f"--budget {text!r}: use a time > 0")
    return secs


def format_seconds(s: float) -> str:
    """Seconds as ``12.3 s``, ``4m05s`` or ``1h02m``."""
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def halving_order(scores: Sequence[tuple[str, float | None, float | None]]) -> list[str]:
    """Arm names best first by (metric, best F1), missing or NaN values last, ties kept in
    the given order (stable): the order successive halving keeps arms in."""

    def key(item: tuple[int, tuple[str, float | None, float | None]]) -> tuple[float, ...]:
        i, (_, m, b) = item
        return (-_finite(m), -_finite(b), float(i))

    return [s[0] for _, s in sorted(enumerate(scores), key=key)]


def _finite(v: float | None) -> float:
    return float(v) if v is not None and math.isfinite(float(v)) else -math.inf
