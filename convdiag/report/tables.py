"""The summary tables of a retrain (before / baseline / remedy) and of a sweep (one row per
arm), shared by their console, Markdown and HTML renderers."""

from __future__ import annotations

from typing import Any

from convdiag.report.console import fmt_num
from convdiag.training.evaluate import SUMMARY_KEYS

LABELS = {
    "f1_at_0.5": "F1 @ 0.5",
    "best_f1": "best F1",
    "best_threshold": "best threshold",
    "precision": "precision @ 0.5",
    "recall": "recall (Pd) @ 0.5",
    "fp_per_image": "FP / image @ 0.5",
    "loc_error_px": "loc. error (px)",
    "cls_loss": "cls loss",
    "constant_loss": "constant-predictor loss",
}


def comparison_rows(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows: one row per SUMMARY_KEYS metric, a column per run present."""
    runs = [k for k in ("before", "baseline", "remedy") if report.get(k)]
    rows = [[LABELS[k], *(report[r].get(k) for r in runs)] for k in SUMMARY_KEYS]
    return ["metric", *runs], rows


TABLE_COLUMNS = ("arm", "F1 @ 0.5", "best F1", "FP / image", "loc. error (px)",
                 "steps to F1 0.5", "remedies")  # fmt: skip


def _pm(mean: Any, std: Any) -> str:
    if mean is None:
        return "-"
    return fmt_num(mean) if std is None else f"{fmt_num(mean)} ± {fmt_num(std)}"


def table_rows(report: dict[str, Any]) -> list[list[Any]]:
    """Table rows, best mean F1 at 0.5 first: "mean ± std" cells; steps to F1 0.5 as
    "mean (k/n seeds)" or "never"."""

    def key(r: dict[str, Any]) -> float:
        v = r.get("f1_at_0.5_mean")
        return -(v if v is not None else -1.0)

    out = []
    for r in sorted(report["rows"], key=key):
        reach = "never"
        if r.get("reached"):
            reach = f"{_pm(r['steps_to_f1_0.5_mean'], r['steps_to_f1_0.5_std'])} "
            reach += f"({r['reached']}/{r['seeds']})"
        out.append(
            [
                r["arm"],
                *(_pm(r.get(f"{m}_mean"), r.get(f"{m}_std"))
                  for m in ("f1_at_0.5", "best_f1", "fp_per_image", "loc_error_px")),
                reach,
                r["remedies"],
            ]
        )  # fmt: skip
    return out
