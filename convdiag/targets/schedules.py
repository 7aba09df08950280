"""Soft-label schedules: (progress, kernel, sigma) steps that shrink the soft window as
training goes (``DYNAMIC``), and ``parse_schedule`` for ``--schedule "0.3:5:1.2,..."``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from convdiag.errors import InputError
from convdiag.load.recipe import MAX_KERNEL


def _fmt_float(x: float) -> str:
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


@dataclass
class Schedule:
    """Soft-label schedule: phases (end_of_phase_fraction, kernel, sigma), ends increasing.

    Phase p applies while progress < its end; progress >= the last end (1.0) stays in the
    last phase. ``str(schedule)`` is ``"END:K:SIGMA,..."`` and round-trips through
    ``parse_schedule``.
    """

    phases: list[tuple[float, int, float]]

    def at(self, progress: float) -> tuple[int, float]:
        """(kernel, sigma) at a training progress in [0, 1]."""
        for end, k, sigma in self.phases:
            if progress < end:
                return k, sigma
        _, k, sigma = self.phases[-1]
        return k, sigma

    def __str__(self) -> str:
        return ",".join(f"{_fmt_float(e)}:{k}:{_fmt_float(s)}" for e, k, s in self.phases)


DYNAMIC = Schedule([(0.3, 5, 1.2), (0.7, 4, 1.0), (1.0, 3, 0.8)])

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_schedule(text: str) -> Schedule:
    """Parse ``"dynamic"`` or ``"END:K:SIGMA,..."`` (e.g. ``"0.3:5:1.2,0.7:4:1.0,1.0:3:0.8"``).

    Ends strictly increase in (0, 1] and the last is 1.0; K is an integer >= 1; SIGMA > 0.
    Anything else raises InputError naming --schedule and the problem.
    """
    raw = str(text).strip()
    if raw.lower() == "dynamic":
        return Schedule(list(DYNAMIC.phases))
    if not raw:
        raise InputError("--schedule: empty; use 'dynamic' or 'END:K:SIGMA,...'")
    phases: list[tuple[float, int, float]] = []
    for part in raw.split(","):
        item = part.strip()
        m = re.fullmatch(rf"({_NUM})\s*:\s*(\d+)\s*:\s*({_NUM})", item)
        if not m:
            raise InputError(
                f"--schedule {raw!r}: phase {item!r} is not END:K:SIGMA "
                "(e.g. 0.3:5:1.2,0.7:4:1.0,1.0:3:0.8) or 'dynamic'"
            )
        end, k, sigma = float(m.group(1)), int(m.group(2)), float(m.group(3))
        if not 0 < end <= 1:
            raise InputError(f"--schedule {raw!r}: phase end {end:g} is not in (0, 1]")
        if phases and end <= phases[-1][0]:
            prev = phases[-1][0]
            raise InputError(
                f"--schedule {raw!r}: phase ends must increase ({end:g} after {prev:g})"
            )
        if not 1 <= k <= MAX_KERNEL:
            raise InputError(f"--schedule {raw!r}: kernel {k} must be 1 to {MAX_KERNEL}")
        if not (math.isfinite(sigma) and 0 < sigma <= MAX_KERNEL):
            raise InputError(f"--schedule {raw!r}: sigma {sigma:g} must be in (0, {MAX_KERNEL}]")
        phases.append((end, k, sigma))
    if phases[-1][0] != 1.0:
        raise InputError(f"--schedule {raw!r}: the last phase must end at 1.0")
    return Schedule(phases)
