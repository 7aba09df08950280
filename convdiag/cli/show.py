"""``convdiag show report.json``: render a saved analyze or logs report again, without
recomputing (a report's ``kind`` picks the renderer: ``analyze``, the default, or ``logs``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from convdiag.cli.options import format_option


def read_report(path: str) -> dict[str, Any]:
    """Load and check an analyze or logs report.json; InputError naming the file otherwise."""
    from convdiag.errors import InputError

    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, dict) or "findings" not in data or "metrics" not in data:
        raise InputError(f"{p}: not an analyze report nor a logs report (no findings and metrics)")
    if data.get("schema") != 1:
        raise InputError(f"{p}: report schema {data.get('schema')!r} is not supported (1)")
    if not isinstance(data["findings"], list) or not all(
        isinstance(f, dict) and {"id", "severity", "evidence"} <= set(f) for f in data["findings"]
    ):
        raise InputError(f"{p}: malformed findings (each needs id, severity, evidence)")
    if data.get("kind") != "logs":
        data.setdefault("analyses", {})
    return data


@click.command("show")
@click.argument("report", type=click.Path())
@format_option()
@click.option(
    "--fail-on",
    type=click.Choice(["info", "warning", "error", "never"]),
    default=None,
    help="Exit 1 when a finding is at or above this severity.",
)
def command(report: str, fmt: str, fail_on: str | None) -> int:
    """Render a saved analyze or logs REPORT (report.json or its folder) again.

    \b
    Example: convdiag show report/report.json --format markdown
    """
    from convdiag.diagnosis.findings import Finding, exit_code
    from convdiag.errors import InputError
    from convdiag.report.console import emit

    data = read_report(report)
    if data.get("kind") == "logs":
        from convdiag.report.logs_report import render_markdown, render_table
    else:
        from convdiag.report.analyze_report import render_markdown, render_table
    try:
        findings = [Finding.from_dict(f) for f in data["findings"]]
    except (TypeError, ValueError, KeyError) as e:
        raise InputError(f"{report}: malformed findings ({e})") from None
    emit(data, fmt, lambda c: render_table(c, data), lambda: render_markdown(data))
    return exit_code(findings, fail_on)
