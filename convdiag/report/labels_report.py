"""Rendering of a ``labels`` report: a table per level, findings, recommendation (the
plots are ``report.label_plots``).

Renderers only read the plain data of ``label_statistics`` (plus the ``dataset`` block the
command adds), so a saved report.json renders again without recomputing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from convdiag.report.console import fmt_num, md_table, table

Getter = Callable[[dict[str, Any]], Any]


def _get(*path: str) -> Getter:
    def get(d: dict[str, Any]) -> Any:
        cur: Any = d
        for p in path:
            if cur is None:
                return None
            cur = cur.get(p)
        return cur

    return get


def _ratio(v: float | None) -> str | None:
    return None if v is None else f"1:{fmt_num(round(v)) if v >= 10 else fmt_num(float(v))}"


def _grid(d: dict[str, Any]) -> str:
    g = d.get("grid")
    if g:
        return f"{g[0]}x{g[1]}"
    lo, hi = d["grid_min"], d["grid_max"]
    return f"{lo[0]}x{lo[1]} .. {hi[0]}x{hi[1]}"


HARD_ROWS: list[tuple[str, Getter]] = [
    ("stride (px)", _get("stride")),
    ("grid (h x w)", _grid),
    ("images", _get("images")),
    ("targets", _get("targets")),
    ("cells", _get("cells")),
    ("positive cells", _get("positive_cells")),
    ("positive fraction", _get("pos_fraction")),
    ("positives : negatives", lambda d: _ratio(d.get("neg_per_pos"))),
    ("positives / image, mean", _get("positives_per_image", "mean")),
    ("positives / image, max", _get("positives_per_image", "max")),
    ("collisions (targets)", _get("collisions")),
    ("collision share", _get("collision_share")),
    ("quantisation mean (px)", _get("quantization_px", "mean")),
    ("quantisation p95 (px)", _get("quantization_px", "p95")),
    ("quantisation max (px)", _get("quantization_px", "max")),
    ("share beyond match radius", _get("quantization_px", "share_over_radius")),
    ("constant-predictor BCE", _get("constant_loss", "bce")),
    ("constant-predictor focal", _get("constant_loss", "focal")),
    ("pos. gradient share, BCE at prior", _get("initial_pos_grad_share")),
    ("pos. gradient share, BCE at bias 0", _get("initial_pos_grad_share_zero_bias")),
    ("pos. gradient share, focal at prior", _get("initial_pos_grad_share_focal")),
]

SOFT_ROWS: list[tuple[str, Getter]] = [
    ("soft window", lambda s: f"{s['kernel']}x{s['kernel']} sigma {s['sigma']:g}"),
    ("soft positive mass", _get("positive_mass")),
    ("soft mass / target", _get("mass_per_target")),
    ("soft non-zero cells", _get("nonzero_cells")),
    ("soft non-zero fraction", _get("nonzero_fraction")),
    ("soft mass : rest", lambda s: _ratio(s.get("neg_per_pos"))),
    ("soft cells / target, mean", _get("nonzero_cells_per_target", "mean")),
    ("soft cells / target, min", _get("nonzero_cells_per_target", "min")),
    ("soft overlapping targets", _get("overlaps")),
    ("soft constant BCE", _get("constant_loss", "bce")),
    ("soft constant focal", _get("constant_loss", "focal")),
    ("soft pos. gradient share, BCE at bias 0", _get("initial_pos_grad_share_zero_bias")),
    ("soft pos. gradient share, focal at prior", _get("initial_pos_grad_share_focal")),
]


def level_rows(stats: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns (statistic, then one per level) and rows, soft rows when present."""
    names = list(stats["levels"])
    levels = [stats["levels"][n] for n in names]
    rows = [[label, *(get(v) for v in levels)] for label, get in HARD_ROWS]
    softs = [v.get("soft") for v in levels]
    if any(s is not None for s in softs):
        rows += [
            [label, *(None if s is None else get(s) for s in softs)] for label, get in SOFT_ROWS
        ]
        phases = next((s.get("phases") for s in softs if s and s.get("phases")), None)
        for i, ph in enumerate(phases or []):
            label = f"phase < {ph['end']:g} ({ph['kernel']}x{ph['kernel']}, {ph['sigma']:g}) mass"
            rows.append([label, *(s["phases"][i]["positive_mass"] if s else None for s in softs)])
    return ["statistic", *names], rows


def _settings_line(stats: dict[str, Any]) -> str:
    s = stats.get("settings", {})
    ds = stats.get("dataset") or {}
    head = f"{ds.get('path', 'dataset')}: " if ds else ""
    if s.get("schedule"):
        lab = f"soft labels, schedule {s['schedule']} (table: first phase)"
    elif s.get("labels") == "soft":
        lab = f"soft labels {s['kernel']}x{s['kernel']}, sigma {s['sigma']:g}, trunc {s['trunc']:g}"
    else:
        lab = "hard labels (add --soft for soft-label rows)"
    return f"{head}{lab}; match radius {s.get('radius', 3):g} px"


def _recommendation_lines(rec: dict[str, Any]) -> list[str]:
    why = rec.get("why", {})
    labels = (
        f"soft {rec['kernel']}x{rec['kernel']}, sigma {rec['sigma']:g}, trunc {rec['trunc']:g}"
        if rec["labels"] == "soft"
        else "hard"
    )
    return [
        f"level {rec['level']} (stride {rec['stride']}): {why.get('level', '')}",
        f"labels {labels}: {why.get('labels', '')}",
        f"sigma {rec['sigma']:g}: {why.get('sigma', '')}",
        f"kernel {rec['kernel']}x{rec['kernel']}: {why.get('kernel', '')}",
    ]


def _finding_remedies(f: dict[str, Any]) -> str:
    parts = []
    for r in f.get("remedies", []):
        params = ",".join(f"{k}={v}" for k, v in r.get("params", {}).items())
        parts.append(r["id"] + (f":{params}" if params else ""))
    return ", ".join(parts)


def render_table(console: Console, stats: dict[str, Any]) -> None:
    """Print the per-level table, the findings and the recommendation."""
    cols, rows = level_rows(stats)
    console.print(table(f"Label statistics — {_settings_line(stats)}", cols, rows))
    findings = stats.get("findings") or []
    if findings:
        console.print("[bold]Risks[/bold] (warnings; exit code unchanged unless --fail-on)")
        for f in findings:
            console.print(
                f"  [yellow]{f['severity']}[/yellow] {f['id']} "
                + escape(f"[{f['level'] or 'data'}]: {f['explanation']}"),
                highlight=False,
            )
            rem = _finding_remedies(f)
            if rem:
                console.print(f"      remedies: {rem}", highlight=False)
    else:
        console.print("No label risks found.")
    console.print("[bold]Recommendation[/bold]")
    for line in _recommendation_lines(stats["recommendation"]):
        console.print(f"  {line}", highlight=False)
    skipped = (stats.get("dataset") or {}).get("skipped") or []
    if skipped:
        console.print(f"  skipped {len(skipped)} input(s) (see report.json)")


def render_markdown(stats: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """The report as Markdown; ``plots`` are PNG names linked relative to report.md."""
    cols, rows = level_rows(stats)
    text = "# Label statistics\n\n" + _settings_line(stats) + "\n\n" + md_table(cols, rows)
    findings = stats.get("findings") or []
    text += "\n## Risks\n\n"
    if not findings:
        text += "No label risks found.\n"
    for f in findings:
        text += f"- **{f['id']}** ({f['severity']}, {f['level'] or 'data'}): {f['explanation']}"
        rem = _finding_remedies(f)
        text += f" Remedies: `{rem}`.\n" if rem else "\n"
    text += "\n## Recommendation\n\n"
    text += "".join(f"- {line}\n" for line in _recommendation_lines(stats["recommendation"]))
    if plots:
        text += "\n## Plots\n\n" + "".join(f"![{Path(p).stem}]({p})\n\n" for p in plots)
    return text
