"""One self-contained HTML page from a saved report (any kind): no network, plots inline.

``render_html(report, base)`` reads only the report's data and the PNG files it names
(relative to ``base``, the report's folder) and returns the page: the verdict first; each
finding a card whose evidence table and plots it links to (``#evidence-...``, ``#plot-...``);
remedies with their parameters and the ``convdiag retrain`` command that applies them;
metric tables (plain HTML, readable without scripts; a short inline script sorts them by a
click on a header). Styles are inline, the layout fits a phone and prints.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from convdiag.report.console import fmt_num

SEVERITY_COLOURS = {"error": "#b3261e", "warning": "#8a5a00", "info": "#2f5f8a"}
# which plots show a finding's evidence; a finding not named here links to its level's plots
EVIDENCE_PLOTS = {
    "background-collapse": ("scores", "detections", "gradients"),
    "calibration-collapse": ("scores", "detections"),
    "fp-flood": ("detections", "scores"),
    "gradient-starvation": ("gradients", "counterfactual"),
    "head-imbalance": ("gradients",),
    "regression-collapse": ("offsets",),
    "label-quantization": ("offsets",),
}
MAX_PLOT_BYTES = 8 * 2**20
RACE_PLOT = "race.png"

CSS = """
:root{--fg:#1b1b1f;--muted:#5f6368;--line:#dadce0;--bg:#fff;--card:#f8f9fa}
*{box-sizing:border-box}body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;
color:var(--fg);background:var(--bg);margin:0 auto;max-width:1100px;padding:12px}
h1{font-size:1.35em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;
border-bottom:1px solid var(--line)}h3{font-size:1em;margin:.3em 0}
.verdict{padding:10px 14px;border-radius:8px;color:#fff;font-weight:600;margin:8px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;
margin:10px 0}.badge{display:inline-block;border-radius:4px;padding:0 6px;color:#fff;
font-size:.85em;margin-right:6px}.muted{color:var(--muted)}
table{border-collapse:collapse;margin:6px 0;font-size:.92em;display:block;overflow-x:auto}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef0f3;cursor:pointer}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#202124;color:#e8eaed;padding:8px 10px;border-radius:6px;overflow-x:auto;
white-space:pre-wrap;word-break:break-all}figure{margin:10px 0}
img{max-width:100%;height:auto;border:1px solid var(--line)}a{color:#1a5fb4}
@media print{th{cursor:auto}.verdict{color:#000;border:2px solid #000}pre{color:#000;
background:#fff;border:1px solid #000}}
"""
# Sorting is a convenience: without scripts the tables read the same.
SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th,i){
 th.addEventListener('click',function(){var t=th.closest('table'),b=t.tBodies[0];
 var rows=Array.from(b.rows),up=th.dataset.dir!=='up';th.dataset.dir=up?'up':'down';
 rows.sort(function(a,c){var x=a.cells[i].dataset.v||a.cells[i].textContent,
 y=c.cells[i].dataset.v||c.cells[i].textContent,nx=parseFloat(x),ny=parseFloat(y);
 var r=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return up?r:-r});
 rows.forEach(function(r){b.appendChild(r)})})});
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _slug(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(str(p) for p in parts if p)).strip("-")


def _cell(v: Any) -> str:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return f"<td>{_e('-' if v is None else v)}</td>"
    if isinstance(v, int | float):
        return f'<td class="num" data-v="{_e(v)}">{_e(fmt_num(v))}</td>'
    return f"<td>{_e(json.dumps(v, default=str)[:200])}</td>"


def table_html(header: list[str], rows: list[list[Any]], anchor: str = "") -> str:
    """A sortable HTML table; numbers right-aligned and sorted by value."""
    ident = f' id="{_e(anchor)}"' if anchor else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in rows)
    return (
        f'<table class="sortable"{ident}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def plot_entries(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(level, name, file) of every plot a report lists: ``{"P2": {"scores": "P2_scores.png"}}``
    (per level), ``{"timeline": "timeline.png"}`` or ``["curves.png", ...]`` (level ""),
    and race.png for a report with a ``race`` section."""
    plots = report.get("plots") or {}
    items: list[tuple[str, str, Any]] = []
    if isinstance(plots, dict):
        for lv, v in plots.items():
            if isinstance(v, dict):
                items += [(str(lv), str(k), f) for k, f in v.items()]
            else:
                items.append(("", str(lv), v))
    elif isinstance(plots, list):
        items += [("", Path(str(f)).stem, f) for f in plots]
    if report.get("race") and not any(f == RACE_PLOT for _, _, f in items):
        items.append(("", "race", RACE_PLOT))  # a raced report's plot, beside its report.json
    return [(lv, name, f) for lv, name, f in items if isinstance(f, str)]


def _plots(report: dict[str, Any], base: Path | None) -> dict[tuple[str, str], str]:
    """{(level, name): data URI} of every plot file the report names that can be read."""
    out: dict[tuple[str, str], str] = {}
    if base is None:
        return out
    for lv, name, f in plot_entries(report):
        p = base / f
        try:
            if p.is_file() and p.stat().st_size <= MAX_PLOT_BYTES:
                out[(lv, name)] = "data:image/png;base64," + base64.b64encode(
                    p.read_bytes()
                ).decode("ascii")
        except OSError:
            continue
    return out


def _command(report: dict[str, Any], remedy: dict[str, Any]) -> str:
    params = ",".join(f"{k}={v}" for k, v in (remedy.get("params") or {}).items())
    spec = remedy.get("id", "") + (f":{params}" if params else "")
    ckpt, data = report.get("checkpoint") or "CHECKPOINT", report.get("data") or "DATA"
    return f"convdiag retrain {ckpt} --data {data} --remedy {spec} --compare"


def _finding(report: dict[str, Any], f: dict[str, Any], plots: dict[tuple[str, str], str]) -> str:
    sev, lv = str(f.get("severity", "info")), f.get("level") or ""
    key = _slug(f.get("id"), lv)
    colour = SEVERITY_COLOURS.get(sev, "#555")
    ev = f.get("evidence") or {}
    names = [n for n in EVIDENCE_PLOTS.get(str(f.get("id")), ()) if (lv, n) in plots]
    names = names or [n for (plv, n) in plots if plv == lv]
    links = [f'<a href="#evidence-{key}">evidence</a>']
    links += [f'<a href="#plot-{_slug(lv, n)}">{_e(n)} plot</a>' for n in names]
    parts = [
        f'<div class="card" id="finding-{key}">',
        f'<h3><span class="badge" style="background:{colour}">{_e(sev)}</span>'
        f"{_e(f.get('id'))}{' at ' + _e(lv) if lv else ''}</h3>",
        f"<p>{_e(f.get('explanation', ''))}</p>",
        f'<p class="muted">{" · ".join(links)}</p>',
        table_html(["evidence", "value"], [[k, v] for k, v in ev.items()], f"evidence-{key}"),
    ]
    remedies = [r for r in f.get("remedies") or [] if isinstance(r, dict)]
    if remedies:
        parts.append("<h3>Remedies</h3><ol>")
        for r in remedies:
            params = ", ".join(f"{k}={fmt_num(v)}" for k, v in (r.get("params") or {}).items())
            parts.append(f"<li><b>{_e(r.get('id'))}</b> {_e(params)}<br>")
            parts.append(f'<span class="muted">{_e(r.get("why", ""))}</span>')
            if r.get("applied", True):
                parts.append(f"<pre><code>{_e(_command(report, r))}</code></pre>")
            else:
                parts.append('<br><span class="muted">advice: not applied by retrain</span>')
            parts.append("</li>")
        parts.append("</ol>")
    parts.append("</div>")
    return "\n".join(parts)


def _metrics(report: dict[str, Any]) -> str:
    metrics = report.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return ""
    out = ["<h2>Metrics</h2>"]
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    flat = [[k, v] for k, v in metrics.items() if not isinstance(v, dict)]
    if flat:
        out.append(table_html(["metric", "value"], flat, "metrics"))
    if nested:
        cols = list(nested)
        keys: list[str] = []
        for v in nested.values():
            keys += [k for k, x in v.items() if k not in keys and not isinstance(x, dict | list)]
        rows = [[k, *[nested[c].get(k) for c in cols]] for k in keys]
        out.append(table_html(["metric", *cols], rows, "metrics-levels"))
    return "\n".join(out)


def _other_sections(report: dict[str, Any]) -> str:
    """Lists of records (rows of a race, a sweep, a check) as tables, by their key."""
    out = []
    for key, v in report.items():
        if key in ("findings", "metrics", "plots") or not isinstance(v, list) or not v:
            continue
        if all(isinstance(r, dict) for r in v):
            header: list[str] = []
            for r in v:
                header += [k for k in r if k not in header and not isinstance(r[k], dict | list)]
            rows = [[r.get(h) for h in header] for r in v]
            out.append(f"<h2>{_e(key)}</h2>" + table_html(header, rows, _slug("table", key)))
    return "\n".join(out)


def _summary(report: dict[str, Any]) -> str:
    """The kind's own table (a labels report's statistics per level, a retrain's or demo's
    before / baseline / remedy, a sweep's arms), as its console and Markdown show it."""
    kind = report.get("kind")
    try:
        if kind == "labels":
            from convdiag.report.labels_report import level_rows

            title, (cols, rows) = "Label statistics", level_rows(report)
        elif kind in ("retrain", "demo"):
            from convdiag.report.tables import comparison_rows

            title, (cols, rows) = "Before, baseline and remedy", comparison_rows(report)
        elif kind == "sweep":
            from convdiag.report.tables import TABLE_COLUMNS, table_rows

            title, cols, rows = "Arms", list(TABLE_COLUMNS), table_rows(report)
        else:
            return ""
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return ""  # a report without the kind's fields still renders the rest
    return f"<h2>{_e(title)}</h2>" + table_html(list(cols), [list(r) for r in rows], "summary")


def _verdict(report: dict[str, Any], findings: list[dict[str, Any]]) -> str:
    """The report's verdict, else its race's, else the top finding and how many there are."""
    race = report.get("race") if isinstance(report.get("race"), dict) else {}
    verdict = report.get("verdict") or (race or {}).get("verdict")
    if verdict:
        return str(verdict)
    remedy, base = report.get("remedy"), report.get("baseline")
    if not findings and isinstance(remedy, dict) and "f1_at_0.5" in remedy:
        was = f"{fmt_num(base.get('f1_at_0.5'))} unchanged -> " if isinstance(base, dict) else ""
        return f"F1 @ 0.5: {was}{fmt_num(remedy['f1_at_0.5'])} with the remedy"
    rows = [r for r in report.get("rows") or [] if isinstance(r, dict)]
    scored = [r for r in rows if isinstance(r.get("f1_at_0.5_mean"), int | float)]
    if not findings and scored:
        best = max(scored, key=lambda r: r["f1_at_0.5_mean"])
        return f"best arm: {best.get('arm')} (mean F1 @ 0.5 {fmt_num(best['f1_at_0.5_mean'])})"
    if not findings:
        return "no findings"
    f = findings[0]
    where = f" at {f.get('level')}" if f.get("level") else ""
    more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
    return f"{f.get('severity')}: {f.get('id')}{where}{more}"


def render_html(report: dict[str, Any], base: Path | None = None) -> str:
    """The page for ``report`` (plain data of any report kind); ``base``: its folder."""
    kind = str(report.get("kind", "report"))
    findings = [f for f in report.get("findings") or [] if isinstance(f, dict)]
    top = str(findings[0].get("severity", "info")) if findings else "info"
    plots = _plots(report, base)
    subject = " on ".join(
        str(report[k]) for k in ("checkpoint", "data") if isinstance(report.get(k), str)
    )
    body = [
        f"<h1>convdiag {_e(kind)}{': ' + _e(subject) if subject else ''}</h1>",
        f'<div class="verdict" style="background:{SEVERITY_COLOURS.get(top, "#555")}">'
        f"Verdict: {_e(_verdict(report, findings))}</div>",
        _summary(report),
    ]
    if findings:
        body.append("<h2>Findings</h2>")
        body += [_finding(report, f, plots) for f in findings]
    body.append(_metrics(report))
    body.append(_other_sections(report))
    if plots:
        body.append("<h2>Plots</h2>")
        for (lv, name), uri in plots.items():
            label = f"{lv} {name}".strip()
            body.append(
                f'<figure id="plot-{_slug(lv, name)}"><img src="{uri}" alt="{_e(label)}">'
                f"<figcaption>{_e(label)}</figcaption></figure>"
            )
    version = report.get("convdiag_version", "")
    body.append(
        f'<p class="muted">convdiag {_e(version)} · '
        f"report schema {_e(report.get('schema', '-'))}</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>convdiag {_e(kind)}: {_e(_verdict(report, findings))}</title>"
        f"<style>{CSS}</style></head><body>\n"
        + "\n".join(b for b in body if b)
        + f"\n<script>{SCRIPT}</script></body></html>\n"
    )


def write_html(out: str | Path, report: dict[str, Any], plots: list[str] | None = None) -> Path:
    """Write ``out/report.html`` for ``report`` (atomically); ``plots``: PNG names in
    ``out`` to show when the report itself does not list them. Returns the path."""
    from convdiag.load.files import atomic_write_text
    from convdiag.report.saved_arrays import saved_data

    out = Path(out)
    data = dict(report)
    if plots and not data.get("plots"):
        data["plots"] = list(plots)
    # drawn from the data as report.json reads back, so `show --format html` gives this page
    atomic_write_text(out / "report.html", render_html(saved_data(data), out))
    return out / "report.html"
