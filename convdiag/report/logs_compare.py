"""Rendering of a ``logs A B`` comparison: one column per run (console and Markdown), from
the report's ``comparison`` records (the HTML page shows the same records as a table)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from convdiag.report.console import md_table, table


def rows(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the comparison table."""
    recs = report["comparison"]
    head = list(recs[0])
    return head, [[r.get(h) for h in head] for r in recs]


def render_table(console: Console, report: dict[str, Any]) -> None:
    """The side-by-side table and the verdict line."""
    head, body = rows(report)
    console.print(table("convdiag logs: runs compared", head, body))
    console.print(Text("Verdict: " + report["verdict"], style="bold"))


def render_markdown(report: dict[str, Any]) -> str:
    """The comparison as Markdown."""
    head, body = rows(report)
    lines = ["# convdiag logs: runs compared", "", f"**{report['verdict']}**", ""]
    return "\n".join([*lines, md_table(head, body)]) + "\n"
