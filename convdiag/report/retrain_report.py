"""Rendering of a retrain / demo report: before, baseline and remedy side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from convdiag.load.files import write_json
from convdiag.load.recipe import Recipe
from convdiag.report.console import md_table, table
from convdiag.report.curves import curve_arrays, draw_curves
from convdiag.report.html import write_html
from convdiag.report.saved_arrays import load_arrays, save_arrays
from convdiag.report.tables import comparison_rows
from convdiag.training.distributed import is_main
from convdiag.training.loop import write_history


def _recipes(report: dict[str, Any]) -> list[str]:
    rec = report.get("recipes") or {}
    out = []
    for name in ("baseline", "remedy"):
        if name in rec:
            out.append(f"{name}: {Recipe.from_dict(rec[name]).describe()}")
    return out


def render_table(console: Console, report: dict[str, Any]) -> None:
    """Print the comparison as a rich table with the recipes under it."""
    cols, rows = comparison_rows(report)
    steps = report.get("steps")
    console.print(table(f"Retrained {steps} steps (seed {report.get('seed')})", cols, rows))
    for line in _recipes(report):
        console.print(f"  {line}")
    for s in report.get("skipped_remedies") or []:
        console.print(f"  skipped {s['id']}: {s['why']}")


def render_markdown(report: dict[str, Any]) -> str:
    """The comparison as Markdown."""
    cols, rows = comparison_rows(report)
    text = f"## Retrain: {report.get('steps')} steps, seed {report.get('seed')}\n\n"
    text += md_table(cols, rows)
    text += "".join(f"\n- {line}" for line in _recipes(report)) + "\n"
    return text


def write_retrain(report: dict[str, Any], out: Path | None) -> None:
    """Write a ``retrain_compare`` report under ``out`` (rank 0 only; nothing without
    ``out``): history.csv (every run's rows), report.npz (the curves' arrays), curves.png
    drawn from it, report.json and report.html."""
    if out is None or not is_main():
        return
    report.setdefault("kind", "retrain")
    rows = [{**row, "run": name} for name, hist in report["history"].items() for row in hist]
    write_history(out / "history.csv", rows)
    save_arrays(out, {"curves": curve_arrays(report["history"])})
    draw_curves(load_arrays(out)["curves"], out / "curves.png")
    report["plots"] = ["curves.png"]
    write_json(out / "report.json", report)
    write_html(out, report)
