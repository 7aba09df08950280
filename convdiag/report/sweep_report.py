"""Rendering of a sweep: sweep.csv, the table (mean ± std over seeds), the F1-vs-step plot."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from convdiag.load.files import atomic_write_text, csv_text, write_json
from convdiag.report.console import md_table, table
from convdiag.report.html import write_html
from convdiag.report.saved_arrays import load_arrays, save_arrays, save_png
from convdiag.report.tables import TABLE_COLUMNS, table_rows

CSV_COLUMNS = (
    "arm",
    "head",
    "remedies",
    "seeds",
    "steps",
    "f1_at_0.5_mean",
    "f1_at_0.5_std",
    "best_f1_mean",
    "best_f1_std",
    "fp_per_image_mean",
    "fp_per_image_std",
    "loc_error_px_mean",
    "loc_error_px_std",
    "steps_to_f1_0.5_mean",
    "steps_to_f1_0.5_std",
    "reached",
    "seconds_mean",
)


def sweep_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text, CSV_COLUMNS header, one line per arm; empty cells for None/NaN."""
    return csv_text(rows, CSV_COLUMNS)


def _caption(report: dict[str, Any]) -> str:
    c = report["config"]
    n = len(c["seeds"])
    return (
        f"{len(report['rows'])} arms x {n} seed{'s' if n != 1 else ''}, {c['steps']} steps each "
        f"(validation every {c['eval_every']}); mean ± std over seeds"
    )


def render_table(console: Console, report: dict[str, Any]) -> None:
    """The sweep table on ``console``."""
    console.print(table(f"sweep: {_caption(report)}", TABLE_COLUMNS, table_rows(report)))


def render_markdown(report: dict[str, Any]) -> str:
    """The sweep table as Markdown."""
    return f"## Sweep\n\n{_caption(report)}\n\n" + md_table(TABLE_COLUMNS, table_rows(report))


def _curve(history: Sequence[dict[str, Any]], key: str) -> dict[int, float]:
    out = {}
    for row in history:
        v = row.get(key)
        if v is not None and math.isfinite(float(v)):
            out[int(row["step"])] = float(v)
    return out


def f1_arrays(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The F1 curves of a sweep's runs as arrays: {"arms": names [A] (first-seen order),
    "<a>": {"<seed>": {"f1_at_0.5" | "best_f1": float64 [n, 2] (step, value)}}}."""
    arms: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        arms.setdefault(r["arm"], []).append(r)
    out: dict[str, Any] = {"arms": np.asarray(list(arms), dtype=str)}
    for a, rs in enumerate(arms.values()):
        out[str(a)] = {
            str(j): {
                key: np.asarray(
                    sorted(_curve(r["history"], key).items()), dtype=np.float64
                ).reshape(-1, 2)
                for key in ("f1_at_0.5", "best_f1")
            }
            for j, r in enumerate(rs)
        }
    return out


def plot_f1(arrays: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """F1 at 0.5 (left) and best F1 (right) against step, one line per arm: the mean over
    seeds at each evaluated step, with the min-max band when there are several seeds.
    arrays: ``f1_arrays`` (as read back from report.npz)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [str(n) for n in np.atleast_1d(arrays.get("arms", np.zeros(0, dtype=str)))]
    arms = {}
    for a, name in enumerate(names):
        seeds = arrays.get(str(a), {})
        arms[name] = [seeds[k] for k in sorted(seeds, key=int)]
    cmap = plt.get_cmap("tab10")  # ten colours, then the next line style
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    styles = ("-", "--", "-.", ":")
    for i, (name, rs) in enumerate(arms.items()):
        colour, ls = cmap(i % 10), styles[(i // 10) % len(styles)]
        for ax, key in zip(axes, ("f1_at_0.5", "best_f1"), strict=True):
            curves = [
                {int(st): float(v) for st, v in np.asarray(r[key]).reshape(-1, 2)} for r in rs
            ]
            steps = sorted(set().union(*curves))
            if not steps:
                continue
            vals = [[c[s] for c in curves if s in c] for s in steps]
            mean = np.array([np.mean(v) for v in vals])
            ax.plot(steps, mean, ls=ls, color=colour, marker="o", ms=2.5, lw=1.4, label=name)
            if len(rs) > 1:
                lo, hi = [min(v) for v in vals], [max(v) for v in vals]
                ax.fill_between(steps, lo, hi, color=colour, alpha=0.12, lw=0)
    axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[0].set_title("F1 @ 0.5 (validation)")
    axes[1].set_title("best F1 over thresholds (validation)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("F1")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    save_png(fig, path)


def write_outputs(report: dict[str, Any], out: Path, plot: bool = True) -> None:
    """sweep.csv (one row per finished arm) and, with ``plot``, report.npz (the F1 curves'
    arrays), f1_vs_step.png drawn from it, sweep.json and report.html."""
    atomic_write_text(out / "sweep.csv", sweep_csv(report["rows"]))
    if plot:
        save_arrays(out, {"f1": f1_arrays(report["runs"])})
        plot_f1(load_arrays(out)["f1"], out / "f1_vs_step.png")
        report.setdefault("kind", "sweep")
        report["plots"] = ["f1_vs_step.png"]
        write_json(out / "sweep.json", report)
        write_html(out, report)
