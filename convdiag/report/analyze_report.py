"""Rendering of an analyze report as text: console (rich) and Markdown.

Renderers only read the report dict (``report.analyze.analyze_checkpoint``); ``convdiag
show report.json`` uses the same functions. The PNG plots are ``report.analyze_plots``.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from convdiag.report.console import fmt_num, md_table, table

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "green"}
METRIC_ROWS = (
    ("best_f1", "best F1 (0.05-0.95)"),
    ("best_threshold", "best-F1 threshold"),
    ("f1_at_0.5", "F1 @ 0.5"),
    ("precision_at_0.5", "precision @ 0.5"),
    ("recall_at_0.5", "recall (Pd) @ 0.5"),
    ("fp_per_image", "FP / image @ 0.5"),
    ("best_f1_low", "best F1 (any threshold)"),
    ("best_threshold_low", "its threshold"),
    ("auc", "AUC target vs background"),
    ("peak_score_p50", "target peak score (median)"),
    ("mean_score", "mean score"),
    ("label_prior", "label prior (mean label)"),
    ("cls_loss", "cls loss"),
    ("constant_loss", "constant-predictor loss"),
    ("loss_ratio", "cls / constant loss"),
    ("cls_loss_pos", "cls loss, positive part"),
    ("cls_loss_neg", "cls loss, negative part"),
    ("pos_grad_share", "gradient share at targets"),
    ("target_area_grad_share", "... with neighbourhood"),
    ("grad_cells_90", "cells holding 90% of gradient"),
    ("cls_grad_norm", "|grad| cls head"),
    ("reg_grad_norm", "|grad| offset head"),
    ("offset_std_ratio", "offset std ratio"),
    ("offset_r2", "offset R^2"),
    ("offset_loc_error_px", "offset error at targets (px)"),
    ("loc_error_px", "matched error @ 0.5 (px)"),
)
SHARE_COLS = ("target", "neighbourhood", "background", "hotspot")


# --------------------------------------------------------------------------- text helpers


def params_text(params: dict[str, Any]) -> str:
    """A remedy's parameters as ``k=v,k=v`` (numbers in short form)."""
    return ",".join(f"{k}={fmt_num(v)}" for k, v in params.items())


def remedy_text(r: dict[str, Any]) -> str:
    """``id:k=v,...`` (the form ``retrain --remedy`` takes), marked when advice only."""
    text = r["id"] + (":" + params_text(r["params"]) if r.get("params") else "")
    return text if r.get("applied", True) else f"{text} (advice, not applied by retrain)"


def top_remedy(report: dict[str, Any]) -> dict[str, Any] | None:
    """The remedy of the first finding that has any: its first applicable one, else its
    first advice (``applied`` False: a dead network or shifted labels are not fixed by a
    retrain recipe, and a later finding's remedy would answer the wrong cause)."""
    for f in report.get("findings", []):
        rems = [r for r in f.get("remedies", []) if isinstance(r, dict)]
        if rems:
            return dict(next((r for r in rems if r.get("applied", True)), rems[0]))
    return None


def _evidence_text(ev: dict[str, Any], limit: int = 6) -> str:
    return ", ".join(f"{k} {fmt_num(v)}" for k, v in list(ev.items())[:limit])


def _title(report: dict[str, Any]) -> str:
    return f"{report.get('checkpoint', 'model')} on {report.get('data', 'data')}"


# --------------------------------------------------------------------------- console


def verdict_text(report: dict[str, Any]) -> tuple[Text, dict[str, Any] | None, str]:
    """(panel body starting with the verdict line, top finding or None, its severity)."""
    fs = report.get("findings", [])
    top = fs[0] if fs else None
    sev = top["severity"] if top else "info"
    body = Text()
    body.append("Verdict: ", style="bold")
    body.append(report.get("verdict", "-") + "\n", style=SEVERITY_STYLE.get(sev, ""))
    return body, top, sev


def summary_panel(report: dict[str, Any]) -> Panel:
    """Verdict, top finding (with its explanation) and top remedy."""
    body, top, sev = verdict_text(report)
    if top:
        body.append("Top finding: ", style="bold")
        body.append(f"{top['id']} ({top['severity']}, {top['level']})\n")
        body.append(top["explanation"] + "\n")
    rem = top_remedy(report)
    body.append("Top remedy: ", style="bold")
    if rem and not rem.get("applied", True):
        body.append(remedy_text(rem) + " (advice: retrain does not apply it)\n")
        body.append(f"  {rem.get('why', '')}", style="dim")
    elif rem:
        body.append(remedy_text(rem) + "\n")
        body.append(f"  {rem.get('why', '')}\n", style="dim")
        body.append(
            f"  try: convdiag retrain {report.get('checkpoint', 'CKPT')} --data "
            f"{report.get('data', 'DATA')} --remedy {remedy_text(rem)} --compare",
            style="dim",
        )
    else:
        body.append("none needed")
    rec = report.get("recipe_text", "")
    sub = f"{report.get('images', '?')} images, recipe: {rec} ({report.get('recipe_source', '')})"
    return Panel(
        body,
        title=f"convdiag analyze: {_title(report)}",
        subtitle=sub,
        border_style=SEVERITY_STYLE.get(sev, ""),
        expand=True,
    )


def findings_rows(report: dict[str, Any]) -> list[list[Any]]:
    """Rows (severity, id, level, evidence, top remedy) of the findings table."""
    rows = []
    for f in report.get("findings", []):
        rems = [remedy_text(r) for r in f.get("remedies", [])[:3]]
        rows.append(
            [
                f["severity"],
                f["id"],
                f["level"],
                _evidence_text(f["evidence"]),
                "; ".join(rems) or "-",
            ]
        )
    return rows


def findings_table(report: dict[str, Any]) -> Table:
    """Findings as a rich table; long cells fold instead of being cut."""
    t = Table(title="Findings", title_justify="left", header_style="bold", show_lines=True)
    t.add_column("severity", no_wrap=True)
    t.add_column("id", no_wrap=True)
    t.add_column("level", no_wrap=True)
    t.add_column("evidence", overflow="fold", ratio=3)
    t.add_column("remedies (ranked)", overflow="fold", ratio=2)
    for sev, fid, level, ev, rems in findings_rows(report):
        t.add_row(
            Text(sev, style=SEVERITY_STYLE.get(sev, "")),
            fid,
            str(level),
            ev,
            rems.replace("; ", "\n"),
        )
    return t


def metric_rows(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of the per-level metrics table."""
    levels = list(report.get("metrics", {}))
    rows = []
    for key, label in METRIC_ROWS:
        rows.append([label, *[report["metrics"][lv].get(key) for lv in levels]])
    return ["metric", *levels], rows


def share_rows(report: dict[str, Any], level: str) -> list[list[Any]]:
    """Rows (loss, shares by region, cells for 90%) of the counterfactual gradient table."""
    g = report.get("analyses", {}).get(level, {}).get("gradients", {})
    rows = []
    for name, c in g.get("candidates", {}).items():
        label = name if not c.get("params") else f"{name} ({params_text(c['params'])})"
        rows.append([label, *[c["shares"].get(k) for k in SHARE_COLS], c["cells_for_90pct"]])
    return rows


def render_table(console: Console, report: dict[str, Any]) -> None:
    """Summary panel, findings, metrics per level, gradient shares, remedies, model notes."""
    console.print(summary_panel(report))
    console.print(findings_table(report))
    cols, rows = metric_rows(report)
    console.print(table("Metrics", cols, rows))
    for lv in report.get("metrics", {}):
        console.print(
            table(
                f"{lv}: where the classification gradient goes, now and under each remedy "
                "(same logits, no retraining)",
                ["loss", *SHARE_COLS, "cells for 90%"],
                share_rows(report, lv),
            )
        )
    parts = []
    for f in report.get("findings", []):
        if not f.get("remedies"):
            continue
        t = Text(f"{f['id']} ({f['level']}):\n", style="bold")
        for k, r in enumerate(f["remedies"], 1):
            t.append(f"  {k}. {remedy_text(r)}\n")
            if r.get("why"):
                t.append(f"     {r['why']}\n", style="dim")
        parts.append(t)
    if parts:
        console.print(Panel(Group(*parts), title="Remedies, ranked", expand=True))
    model = report.get("model", {})
    notes = []
    if model.get("missing_keys"):
        notes.append(f"missing keys: {', '.join(model['missing_keys'][:10])}")
    if model.get("unexpected_keys"):
        notes.append(f"unexpected keys: {', '.join(model['unexpected_keys'][:10])}")
    notes += list(model.get("notes", []))
    if notes:
        console.print(Text("Model: " + "; ".join(notes), style="dim"))
    if report.get("plots"):
        console.print(
            Text(f"Plots: {len(_plot_files(report))} PNG files beside report.json", style="dim")
        )


# --------------------------------------------------------------------------- markdown


def _plot_files(report: dict[str, Any]) -> list[str]:
    return [p for lv in report.get("plots", {}).values() for p in lv.values()]


PLOT_CAPTIONS = {
    "gradients": "Classification gradient |dL/dlogit|",
    "counterfactual": "Gradient under each candidate remedy (same logits)",
    "scores": "Score histograms",
    "offsets": "Offsets at target cells",
    "detections": "Detections",
}


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown, with the PNG plots embedded by relative link."""
    lines = [f"# convdiag analyze: {_title(report)}", ""]
    lines.append(f"**Verdict: {report.get('verdict', '-')}**")
    lines.append("")
    lines.append(
        f"{report.get('images', '?')} images, recipe: {report.get('recipe_text', '')} "
        f"(from {report.get('recipe_source', '-')})."
    )
    rem = top_remedy(report)
    if rem:
        lines += ["", f"Top remedy: `{remedy_text(rem)}` - {rem.get('why', '')}"]
    lines += ["", "## Findings", ""]
    for f in report.get("findings", []):
        lines.append(f"### {f['id']} ({f['severity']}, {f['level']})")
        lines.append("")
        lines.append(f["explanation"])
        lines.append("")
        ev = list(f["evidence"].items())
        if ev:
            lines.append(md_table(["evidence", "value"], ev))
        for k, r in enumerate(f.get("remedies", []), 1):
            lines.append(f"{k}. `{remedy_text(r)}` - {r.get('why', '')}")
        lines.append("")
    cols, rows = metric_rows(report)
    lines += ["## Metrics", "", md_table(cols, rows)]
    for lv, plots in report.get("plots", {}).items():
        lines += [f"## {lv}", ""]
        lines += [md_table(["loss", *SHARE_COLS, "cells for 90%"], share_rows(report, lv))]
        for kind, path in plots.items():
            lines += [f"![{lv} {PLOT_CAPTIONS.get(kind, kind)}]({path})", ""]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots
