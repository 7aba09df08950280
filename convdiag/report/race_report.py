"""Rendering of a remedy race (``retrain --race``): the race table, the verdict, the curves of
every arm on one plot, and the measured gains beside the predicted ranking (``show``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.console import Console

from convdiag.load.files import save_figure, write_json
from convdiag.report.console import fmt_num, md_table, table

COLUMNS_HEAD = ["arm", "steps"]
COLUMNS_TAIL = ["stopped", "F1@thr", "best F1", "FP/img", "gain"]


def race_rows(race: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and one row per arm: arm, steps trained, the metric at every rung, where it
    stopped, final F1 at the threshold, best F1, FP per image (at its last finished rung),
    and the gain in F1 over the baseline arm at that rung."""
    rungs = race.get("plan", {}).get("rungs", [])
    cols = [*COLUMNS_HEAD, *(f"rung {r['index']} @{r['steps']}" for r in rungs), *COLUMNS_TAIL]
    arms = race.get("arms", [])
    base = next((a for a in arms if a.get("kind") == "baseline"), None)
    rows = []
    for a in arms:
        done = a.get("rungs") or {}
        per = [(done.get(str(r["index"])) or {}).get("metric") for r in rungs]
        last = max((int(k) for k in done), default=None)
        fin = done.get(str(last), {}) if last is not None else {}
        bm = ((base or {}).get("rungs") or {}).get(str(last), {}).get("metric")
        gain = None if a is base or bm is None or fin.get("metric") is None else (
            float(fin["metric"]) - float(bm))  # fmt: skip
        rows.append([_label(a, race), a.get("step"), *per, _stopped(a, race), fin.get("metric"),
                     fin.get("best_f1"), fin.get("fp_per_image"), fmt_gain(gain)])  # fmt: skip
    return cols, rows


def _label(arm: dict[str, Any], race: dict[str, Any]) -> str:
    name = str(arm.get("name"))
    return f"{name} (winner)" if name == race.get("winner") else name


def _stopped(arm: dict[str, Any], race: dict[str, Any]) -> str:
    if arm.get("stopped_at") is not None:
        return f"after rung {arm['stopped_at']}"
    return "budget" if race.get("stopped") else "end"


def _title(race: dict[str, Any]) -> str:
    thr = race.get("threshold", 0.5)
    budget = race.get("budget_s")
    b = f", budget {budget:.0f} s" if budget else ""
    secs = race.get("seconds")
    t = f", {secs:.0f} s" if isinstance(secs, int | float) and math.isfinite(secs) else ""
    return f"Race: F1 @ {thr:g} per rung (seed {race.get('seed')}{b}{t})"


def render_race(console: Console, race: dict[str, Any]) -> None:
    """The race table and the verdict line."""
    cols, rows = race_rows(race)
    console.print(table(_title(race), cols, rows))
    if race.get("stopped"):
        console.print(f"  stopped: {race['stopped']}")
    console.print(f"[bold]{race.get('verdict', '')}[/]")


def race_markdown(race: dict[str, Any]) -> str:
    """The race table and verdict as Markdown."""
    cols, rows = race_rows(race)
    text = f"## {_title(race)}\n\n" + md_table(cols, rows)
    if race.get("stopped"):
        text += f"\nStopped: {race['stopped']}\n"
    return text + f"\n**{race.get('verdict', '')}**\n"


def measured_rows(report: dict[str, Any]) -> list[list[Any]]:
    """Rows (predicted rank, remedy, measured gain over the baseline, where it stopped) for
    the remedies of the predicted ranking, from the report's race."""
    race = report.get("race") or {}
    arms = {a["name"]: a for a in race.get("arms", [])}
    gains = {k: fmt_gain(v) for k, v in (race.get("gains") or {}).items()}
    out: list[list[Any]] = []
    predicted = [p["id"] for p in race.get("predicted", [])]
    for i, rid in enumerate(predicted, 1):
        a = arms.get(rid)
        out.append([i, rid, gains.get(rid), _stopped(a, race) if a else "not raced"])
    for name, a in arms.items():
        if name not in predicted and a.get("kind") != "baseline":
            out.append(["-", name, gains.get(name), _stopped(a, race)])
    return out


def render_measured(console: Console, report: dict[str, Any]) -> None:
    """Predicted ranking beside the measured gains (``show`` of a raced report)."""
    if not report.get("race"):
        return
    rows = measured_rows(report)
    console.print(table("Predicted ranking vs measured gain (race)",
                        ["predicted", "remedy", "measured gain", "stopped"], rows))  # fmt: skip
    console.print(f"  {report['race'].get('verdict', '')}")


def measured_markdown(report: dict[str, Any]) -> str:
    """``render_measured`` as Markdown ('' for a report that was not raced)."""
    if not report.get("race"):
        return ""
    rows = measured_rows(report)
    text = "\n## Predicted ranking vs measured gain (race)\n\n"
    text += md_table(["predicted", "remedy", "measured gain", "stopped"], rows)
    return text + f"\n{report['race'].get('verdict', '')}\n"


def plot_race(race: dict[str, Any], path: Path) -> None:
    """F1 at the threshold (solid) and best F1 (dotted) against step, every arm on one plot;
    rung ends as vertical lines, the baseline in black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    start = race.get("start_row") or {}
    for i, a in enumerate(race.get("arms", [])):
        done = a.get("rungs") or {}
        pts = sorted((int(v["step"]), v.get("metric"), v.get("best_f1")) for v in done.values())
        arch = any(r.get("id") in ("level-change", "fused-head") for r in a.get("remedies", []))
        if start and not arch:  # every arm starts from the checkpoint's weights
            pts = [(0, start.get("f1_at_0.5"), start.get("best_f1")), *pts]
        c = "black" if a.get("kind") == "baseline" else f"C{i % 10}"
        xs = [p[0] for p in pts]
        ax.plot(xs, [_nan(p[1]) for p in pts], marker="o", color=c, label=a["name"])
        ax.plot(xs, [_nan(p[2]) for p in pts], ls=":", color=c)
    for r in race.get("plan", {}).get("rungs", []):
        ax.axvline(r["steps"], color="grey", lw=0.6, ls="--")
    ax.set_xlabel("step")
    ax.set_ylabel(f"F1 @ {race.get('threshold', 0.5):g} (dotted: best F1)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(race.get("verdict", "")[:110], fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _nan(v: Any) -> float:
    return float(v) if v is not None else float("nan")


def write_race(report: dict[str, Any], out: Path) -> None:
    """report.json (the analysis with its ``race``), race.md, race.png and report.html (the
    page ``show --format html`` renders) under ``out``."""
    from convdiag.load.files import atomic_write_text
    from convdiag.report.html import write_html

    race = report["race"]
    plot_race(race, out / "race.png")
    atomic_write_text(out / "race.md", race_markdown(race) + measured_markdown(report))
    write_json(out / "report.json", report)
    write_html(out, report)


def fmt_gain(v: Any) -> str:
    """A gain as +0.123 / -0.045 ('-' when unknown)."""
    return "-" if v is None else f"{float(v):+.3f}" if math.isfinite(float(v)) else fmt_num(v)


def render_table(console: Console, report: dict[str, Any]) -> None:
    """A raced report's race section (``show``): the race table, the verdict, and the
    predicted ranking beside the measured gains."""
    render_race(console, report["race"])
    render_measured(console, report)


def render_markdown(report: dict[str, Any]) -> str:
    """``render_table`` as Markdown."""
    return race_markdown(report["race"]) + measured_markdown(report)
