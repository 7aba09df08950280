"""Model outputs: non-finite values and offsets outside [0, 1)."""

from __future__ import annotations

from typing import Any

from convdiag.analyses.base import AnalysisStep, SumState, safe_div


class OutputAnalysis(SumState):
    """Counts NaN/Inf in the classification and offset outputs (inside the images' grids)."""

    name = "outputs"

    def update(self, step: AnalysisStep) -> None:
        """Add one batch's counts."""
        self._add("cls_values", float(step.valid.sum()))
        self._add("cls_nonfinite", float(step.nonfinite_cls))
        if step.reg is not None:
            v = step.valid.expand_as(step.reg)
            r = step.reg[v]
            self._add("reg_values", float(r.numel()))
            self._add("reg_nonfinite", float(step.nonfinite_reg))
            self._add("reg_outside_unit", float(((r < 0) | (r > 1)).sum()))

    def compute(self) -> dict[str, Any]:
        """Counts and fractions of non-finite values; share of offsets outside [0, 1]."""
        cv, rv = float(self._get("cls_values")), float(self._get("reg_values"))
        return {
            "cls_values": int(cv),
            "cls_nonfinite": int(self._get("cls_nonfinite")),
            "cls_nonfinite_fraction": safe_div(float(self._get("cls_nonfinite")), cv),
            "reg_values": int(rv),
            "reg_nonfinite": int(self._get("reg_nonfinite")),
            "reg_nonfinite_fraction": safe_div(float(self._get("reg_nonfinite")), rv),
            "reg_outside_unit_fraction": safe_div(float(self._get("reg_outside_unit")), rv),
        }
