"""Console and Markdown for a report without its own renderer (a ``check`` report, a
``race`` section when ``report.race_report`` is not there): the verdict, then every list of
records in it as a table, by its key."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from convdiag.report.console import md_table, table


def record_tables(data: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(key, header, rows) for every value of ``data`` that is a non-empty list of dicts
    (nested dict and list cells left out); a dict of such lists (a ``race`` section) gives
    its own tables, named ``key.sub``."""
    out = []
    for key, v in data.items():
        if isinstance(v, dict):
            out += [(f"{key}.{k}", h, r) for k, h, r in record_tables(v)]
            continue
        if not isinstance(v, list) or not v or not all(isinstance(r, dict) for r in v):
            continue
        header: list[str] = []
        for r in v:
            header += [k for k in r if k not in header and not isinstance(r[k], dict | list)]
        out.append((str(key), header, [[r.get(h) for h in header] for r in v]))
    return out


def _skip(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in ("findings", "history", "plots")}


def render_table(console: Console, report: dict[str, Any]) -> None:
    """The verdict (when there is one) and the report's record tables on ``console``."""
    if report.get("verdict") is not None:
        console.print(f"[bold]{report['verdict']}[/]")
    for key, header, rows in record_tables(_skip(report)):
        console.print(table(key, header, rows))


def render_markdown(report: dict[str, Any]) -> str:
    """The verdict and the report's record tables as Markdown."""
    text = f"# convdiag {report.get('kind', 'report')}\n\n"
    if report.get("verdict") is not None:
        text += f"**{report['verdict']}**\n\n"
    for key, header, rows in record_tables(_skip(report)):
        text += f"## {key}\n\n" + md_table(header, rows) + "\n"
    return text
