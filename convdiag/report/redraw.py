"""``convdiag show report.json --plots DIR``: every PNG of a saved report drawn again from
report.json and report.npz alone (no model, no data), by the same functions the commands
draw them with, so the files are byte-identical for the same matplotlib version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convdiag.errors import InputError
from convdiag.report.saved_arrays import NPZ_NAME


def _need(arrays: dict[str, Any], key: str, kind: str, source: Path) -> dict[str, Any]:
    if not arrays:
        raise InputError(f"{source}: no such file (the arrays the plots are drawn from)")
    if key not in arrays:
        raise InputError(f"{source}: a {kind} report's arrays hold no {key!r}: cannot redraw")
    value: dict[str, Any] = arrays[key]
    return value


def redraw_plots(
    report: dict[str, Any], arrays: dict[str, Any], out: Path, source: Path = Path(NPZ_NAME)
) -> list[str]:
    """Draw the plots of ``report`` (its saved data; ``kind`` picks them) from ``arrays``
    (``saved_arrays.load_arrays`` of its report.npz, ``source``, named in errors) into
    ``out``; returns the file names. A kind without plots (check) gives []."""
    kind = str(report.get("kind", "analyze"))
    if kind == "analyze":
        files = []
        if report.get("plots"):
            from convdiag.report.analyze_plots import write_plots

            if not arrays:
                raise InputError(f"{source}: no such file (the arrays the plots are drawn from)")

            done = write_plots(report, arrays, out)
            files = [f for names in done.values() for f in names.values()]
        if report.get("race"):  # retrain --race: the analysis and its race, one plot
            from convdiag.report.race_report import plot_race

            plot_race(report["race"], out / "race.png")
            files.append("race.png")
        return files
    if kind == "labels":
        from convdiag.report.label_plots import draw_labels

        if "overlay.png" in (report.get("plots") or []):
            _need(arrays, "overlay", kind, source)
        return draw_labels(report, arrays, out)
    if kind == "logs":
        from convdiag.report.logs_report import draw_timeline

        draw_timeline(report, _need(arrays, "timeline", kind, source), out / "timeline.png")
        return ["timeline.png"]
    if kind in ("retrain", "demo"):
        from convdiag.report.curves import draw_curves

        name = "curves.png" if kind == "retrain" else "failing_curves.png"
        draw_curves(_need(arrays, "curves", kind, source), out / name)
        return [name]
    if kind == "sweep":
        from convdiag.report.sweep_report import plot_f1

        plot_f1(_need(arrays, "f1", kind, source), out / "f1_vs_step.png")
        return ["f1_vs_step.png"]
    return []
