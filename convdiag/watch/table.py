"""The plain data a log reader returns: named numeric series over a step axis.

A reader turns a log file into a ``RawLog``: one ``Series`` per column (or TensorBoard tag,
or JSON key), each with its own x values, since logs are sparse (train and validation
values arrive at different steps). ``mapping`` then picks the canonical series.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Series:
    """One metric over time: x [N] float64 (step or epoch), values [N] float64 (NaN/Inf kept).

    Missing cells (empty CSV fields, JSON null) are dropped by the readers; a literal NaN or
    Inf in the log stays, so ``non-finite`` symptoms can be found.
    """

    name: str
    x: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float64).reshape(-1)
        self.values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        if len(self.x) != len(self.values):
            raise ValueError(f"series {self.name}: {len(self.x)} steps, {len(self.values)} values")
        if len(self.x) > 1 and np.any(np.diff(self.x) < 0):
            # stable: equal steps keep their order in the file
            order = np.argsort(self.x, kind="stable")
            self.x, self.values = self.x[order], self.values[order]

    def __len__(self) -> int:
        return len(self.x)

    @property
    def finite(self) -> np.ndarray:
        """bool [N]: which values are finite."""
        return np.isfinite(self.values)


@dataclass
class RawLog:
    """Every numeric series of one log, by its name in the log, on a common x axis kind.

    x_name: "step" or "epoch" (what the x values count; "row" when the log has neither).
    notes: what the reader had to decide (skipped lines, remapped steps), for the report.
    runs/run: a file to which several runs were appended (its steps restart) holds ``runs``
    runs; the columns are those of run ``run`` (the last unless asked otherwise).
    """

    format: str
    path: str
    files: list[str]
    columns: dict[str, Series]
    x_name: str = "step"
    notes: list[str] = field(default_factory=list)
    runs: int = 1  # runs found in the file(s) (steps restarting); one of them is read
    run: int = 1  # which of them (1-based) the columns hold
