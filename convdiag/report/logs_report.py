"""Rendering of a ``logs`` report: console (rich), Markdown and the timeline PNG.

Console and Markdown read only the report dict; the timeline also needs the mapped series,
saved as report.npz (``timeline_arrays``) and drawn from it (``draw_timeline``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from convdiag.report.analyze_report import (
    SEVERITY_STYLE,
    findings_rows,
    remedy_text,
    top_remedy,
    verdict_text,
)
from convdiag.report.console import md_table, table

SUMMARY_COLS = ["key", "column", "points", "non-finite", "first", "last", "min", "max", "change"]
SEVERITY_COLOUR = {"error": "#c0392b", "warning": "#e67e22", "info": "#27ae60"}
LOSS_KEYS = ("loss", "cls_loss", "reg_loss")
METRIC_KEYS = ("f1", "precision", "recall", "map")


def metric_rows(report: dict[str, Any]) -> list[list[Any]]:
    """Rows of the series summary table (one per mapped key)."""
    rows = []
    for key, s in report.get("metrics", {}).items():
        ch = s.get("change")
        rows.append(
            [
                key,
                s.get("column"),
                s.get("points"),
                s.get("nonfinite"),
                s.get("first"),
                s.get("last"),
                s.get("min"),
                s.get("max"),
                None if ch is None else f"{ch:+.0%}",
            ]
        )
    return rows


def _source_line(report: dict[str, Any]) -> str:
    src = report.get("source", {})
    return f"{src.get('format', '?')} log {src.get('path', '?')} (x axis: {src.get('axis', '?')})"


def _reference_line(report: dict[str, Any]) -> str:
    ref = report.get("reference", {})
    parts = []
    if ref.get("constant_loss") is not None:
        parts.append(
            f"constant-predictor {ref.get('loss')} loss {ref['constant_loss']:.4g} "
            f"({ref.get('constant_source')})"
        )
    if ref.get("reg_constant") is not None:  # only when an offset loss is logged
        parts.append(f"mean-predictor offset loss {ref['reg_constant']:.4g}")
    if ref.get("level"):
        parts.append(f"level {ref['level']}")
    return "; ".join(parts)


def render_table(console: Console, report: dict[str, Any]) -> None:
    """Summary panel, findings, series summaries, remedies and notes."""
    body, top, sev = verdict_text(report)
    if top:
        body.append(top["explanation"] + "\n")
    rem = top_remedy(report)
    if rem:
        body.append("Top remedy: ", style="bold")
        body.append(remedy_text(rem) + "\n")
        body.append(f"  {rem.get('why', '')}\n", style="dim")
    body.append(_reference_line(report), style="dim")
    console.print(
        Panel(
            body,
            title=f"convdiag logs: {_source_line(report)}",
            border_style=SEVERITY_STYLE.get(sev, ""),
            expand=True,
        )
    )
    console.print(
        table(
            "Findings", ["severity", "id", "level", "evidence", "remedies"], findings_rows(report)
        )
    )
    console.print(table("Series", SUMMARY_COLS, metric_rows(report)))
    notes = list(report.get("source", {}).get("notes", []))
    notes += list(report.get("reference", {}).get("notes", []))
    unmapped = report.get("source", {}).get("unmapped", [])
    if unmapped:
        notes.append("unmapped columns: " + ", ".join(unmapped[:20]))
    if notes:
        console.print(Text("Notes: " + "; ".join(notes), style="dim"))
    if report.get("plots"):
        console.print(Text("Plot: timeline.png beside report.json", style="dim"))


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown, with the timeline embedded by relative link."""
    lines = [f"# convdiag logs: {_source_line(report)}", ""]
    lines += [f"**Verdict: {report.get('verdict', '-')}**", "", _reference_line(report), ""]
    rem = top_remedy(report)
    if rem:
        lines += [f"Top remedy: `{remedy_text(rem)}` - {rem.get('why', '')}", ""]
    lines += ["## Findings", ""]
    for f in report.get("findings", []):
        lines += [f"### {f['id']} ({f['severity']}, {f.get('level') or '-'})", ""]
        lines += [f["explanation"], ""]
        if f.get("evidence"):
            lines.append(md_table(["evidence", "value"], list(f["evidence"].items())))
        for k, r in enumerate(f.get("remedies", []), 1):
            lines.append(f"{k}. `{remedy_text(r)}` - {r.get('why', '')}")
        lines.append("")
    lines += ["## Series", "", md_table(SUMMARY_COLS, metric_rows(report))]
    src = report.get("source", {})
    if src.get("columns"):
        cols = list(src["columns"].items())
        lines += ["## Column mapping", "", md_table(["key", "column"], cols)]
    notes = list(src.get("notes", [])) + list(report.get("reference", {}).get("notes", []))
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if report.get("plots", {}).get("timeline"):
        lines += ["## Timeline", "", f"![timeline]({report['plots']['timeline']})", ""]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- timeline


def _xy(series: dict[str, Any], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = series[key]
    ok = np.asarray(s["finite"], dtype=bool)
    return s["x"][ok], s["values"][ok], s["x"][~ok]


def timeline_arrays(mapped: Any) -> dict[str, Any]:
    """What the timeline shows, as arrays: per mapped series its steps ``x``, ``values``,
    ``finite`` (bool) and the log's ``column`` name."""
    return {
        key: {"x": s.x, "values": s.values, "finite": s.finite, "column": mapped.columns[key]}
        for key, s in mapped.series.items()
    }


def plot_timeline(mapped: Any, report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Save the timeline's arrays as report.npz beside ``path``, then draw the timeline from
    them (``draw_timeline``), as ``show --plots`` does."""
    from convdiag.report.saved_arrays import load_arrays, save_arrays, saved_data

    folder = Path(path).parent
    save_arrays(folder, {"timeline": timeline_arrays(mapped)})
    draw_timeline(saved_data(report), load_arrays(folder).get("timeline", {}), path)


def draw_timeline(
    report: dict[str, Any], series: dict[str, Any], path: str | os.PathLike[str]
) -> None:
    """Losses (with the constant-predictor references dashed), detection metrics, and FP
    per image (else the learning rate) against the step; each finding is a vertical line
    at the step it started, coloured by severity; non-finite values are red crosses.
    series: ``timeline_arrays`` as read back from report.npz."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convdiag.report.saved_arrays import save_png

    keys = series
    third = "fp" if "fp" in keys else ("lr" if "lr" in keys else None)
    n = 2 + (third is not None)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.6 * n + 0.6), sharex=True)
    ref = report.get("reference", {})
    th = report.get("thresholds", {})
    colours = plt.get_cmap("tab10")
    ax = axes[0]
    positive = True
    for i, key in enumerate(LOSS_KEYS):
        if key not in keys:
            continue
        x, y, bad = _xy(series, key)
        ax.plot(x, y, color=colours(i), lw=1.2, label=f"{key} ({series[key]['column']})")
        positive &= bool(len(y) == 0 or y.min() > 0)
        if len(bad):
            ax.plot(bad, np.ones(len(bad)), "x", color="red", ms=7,
                    transform=ax.get_xaxis_transform(), label=f"{key} NaN/Inf")  # fmt: skip
        if key == "cls_loss" and ref.get("constant_loss"):
            ax.axhline(ref["constant_loss"], color=colours(i), ls="--", lw=1,
                       label=f"constant predictor {ref['constant_loss']:.3g}")  # fmt: skip
        if key == "reg_loss":
            rc = ref.get("reg_constant", 0.25)
            ax.axhline(rc, color=colours(i), ls=":", lw=1,
                       label=f"mean-predictor offset loss {rc:.3g}")  # fmt: skip
    lows = [v for k in LOSS_KEYS if k in keys for v in _xy(series, k)[1]]
    if positive and lows and max(lows) / max(min(lows), 1e-12) > 20:
        ax.set_yscale("log")
    ax.set_title("losses")
    ax = axes[1]
    for i, key in enumerate(METRIC_KEYS):
        if key in keys:
            x, y, _ = _xy(series, key)
            ax.plot(x, y, marker="o", ms=3, lw=1.2, color=colours(3 + i),
                    label=f"{key} ({series[key]['column']})")  # fmt: skip
    ax.axhline(th.get("f1_min", 0.1), color="grey", ls="--", lw=1, label="stuck below")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("detection metrics")
    if third is not None:
        ax = axes[2]
        x, y, _ = _xy(series, third)
        ax.plot(x, y, marker="o" if third == "fp" else None, ms=3, color=colours(8),
                label=f"{third} ({series[third]['column']})")  # fmt: skip
        if third == "fp":
            ax.axhline(th.get("fp_per_image_max", 5.0), color="grey", ls="--", lw=1,
                       label="flood above")  # fmt: skip
            ax.set_title("false positives per image")
        else:
            ax.set_title("learning rate")
        if len(y) and y.min() > 0 and y.max() / y.min() > 20:
            ax.set_yscale("log")
    k = 0  # labels stacked top-down, so close or equal steps never overlap
    for f in report.get("findings", []):
        at = f.get("evidence", {}).get("started_at")
        if at is None or not math.isfinite(float(at)):
            continue
        c = SEVERITY_COLOUR.get(f["severity"], "grey")
        for a in axes:
            a.axvline(float(at), color=c, lw=1.5, alpha=0.8)
        plateau = f["id"] == "loss-plateau"
        label = f["id"] + (f" ({f['evidence']['series']})" if plateau else "")
        axes[0].annotate(label, (float(at), 1.0), xycoords=("data", "axes fraction"),
                         xytext=(3, -3 - 11 * k), textcoords="offset points", va="top",
                         fontsize=8, color=c,
                         bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 0.5})  # fmt: skip
        k += 1
    for a in axes:
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes[-1].set_xlabel(report.get("source", {}).get("axis", "step"))
    fig.suptitle(f"{report.get('verdict', '')}", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)
